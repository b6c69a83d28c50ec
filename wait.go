package mpmc

// Idle waiting and wake-ups: the per-process half. The shared half (the
// asleep bits, the futex words, who wakes whom) is in ring.go, invariant 5.
//
// Of the goroutines of one handle blocked on a side, one is the handle's
// sleeper: it does the futex wait itself, and the others wait on a channel
// that the sleeper closes when it leaves (with its result, on Close, or on
// its context's end), so that they retry and one of them becomes the next
// sleeper. So a process holds at most one thread in a futex wait per handle
// and side, however many goroutines are blocked; and a woken sleeper goes on
// with its own call at once, with no hand-over to another goroutine.
//
// No lost wake-up. The sleeper reads the futex word, then sets the asleep
// bit in the other side's position (S1), then retries its operation, then
// sleeps only if the futex word still has the value it read. Every claim of
// the other side is a CAS on that position: a claim after S1 sees the bit,
// clears it, bumps the futex word and wakes (E3, D3). So either the retry
// sees the change, or the claim that makes it wakes the sleeper, or the
// claim came before S1, and S1's result says so: then the sleeper cannot
// count on a wake-up and waits in short slices (from shortSliceMin,
// doubling), looking again after each. A bit can also be
// cleared by a claim that a sleeper did not announce itself for; that
// claimant bumps the futex word, and the sleeper read the word before
// announcing, so its sleep returns at once and it announces again.
//
// No system call under load: a claimant learns of sleepers from its own CAS,
// with no extra load or fence, and the first claim after an announcement
// clears the bit, so a burst of messages to a sleeping side makes one
// FUTEX_WAKE, not one per message.
//
// Sleeps are bounded: a sleeper wakes on its own after idleSlice to look
// again, so that a wake-up lost to a peer killed between its claim and its
// wake-up (a few instructions) strands nobody for long; and every slice is
// at most stallSliceMax while a claim holds the side up (ring.heldUpBy), so
// that a dead claimant is noticed within the recovery timeout plus that.

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// Shared (not private) futex operations: private ones are keyed by the
	// address space and silently miss wake-ups from other processes.
	futexWait = 0
	futexWake = 1

	// idleSlice bounds one futex wait on a queue that is simply empty (or
	// full). Each slice costs the process a wake-up and a trip through the
	// scheduler (about 100-200 µs of CPU on a small VM): at 2 s an idle
	// consumer stays under 0.1% of a core.
	idleSlice = 2 * time.Second
	// stallSliceMax bounds one futex wait while a claim holds the side up.
	stallSliceMax = 100 * time.Millisecond
	// shortSliceMin is the first slice of a sleeper that cannot count on a
	// wake-up (a claim made before it announced itself is in its way); the
	// slices double up to shortSliceMax for a recovery timeout, then up to
	// stallSliceMax.
	shortSliceMin = 50 * time.Microsecond
	shortSliceMax = 2 * time.Millisecond
	// settleMax bounds how long a woken sleeper spins for the claim that
	// woke it to be finished before it sleeps in short slices.
	settleMax = 200 * time.Microsecond

	// DefaultSpin is how long a blocked Enqueue or Dequeue retries before it
	// goes to sleep, unless SetSpin says otherwise.
	DefaultSpin = 20 * time.Microsecond
)

// attempt says what a retry of a waiting call looks for besides its
// chance to go on.
type attempt uint8

const (
	quickly     attempt = iota // only retry: no clock, no system call
	lookForDead                // also check the claim in the way (Queue.checkStall)
)

// waitSide is one side of one handle: the goroutines of this process waiting
// for that side's condition, and which of them sleeps on the futex.
type waitSide struct {
	q    *Queue
	side side
	word int    // this handle's word in the ring's sleeper bitmap
	bit  uint64 // and its bit

	blocked atomic.Int64 // goroutines in the sleep phase of block (for tests)

	mu       sync.Mutex
	sleeping bool          // one goroutine of this handle is the side's sleeper
	ch       chan struct{} // closed when the sleeper leaves
}

func (w *waitSide) init(q *Queue, s side) {
	w.q, w.side = q, s
	w.word, w.bit = q.self/64, 1<<(q.self%64)
	w.ch = make(chan struct{})
}

// kickIfSleeping wakes this handle's sleeper, if it has one.
func (w *waitSide) kickIfSleeping() {
	w.mu.Lock()
	sleeping := w.sleeping
	w.mu.Unlock()
	if sleeping {
		w.q.ring.kick(w.side)
	}
}

// block waits until try succeeds or fails for good, ctx is done or the
// handle is closed, and returns try's first result other than errRetry. The
// caller holds an unpinned call on the handle (Queue.begin) for the whole
// wait; Close sets closing and wakes the sleeper, and block then returns
// ErrClosed.
func (w *waitSide) block(ctx context.Context, try func(look attempt) error) error {
	// Spin: retry, backing off from a tight loop to yielding the processor.
	spin := time.Duration(w.q.spin.Load())
	var until time.Time
	for i := 0; spin != 0; i++ {
		if w.q.closing.Load() {
			return ErrClosed
		}
		// Stall checks (a clock read, a lock) only now and then: with
		// a negative spin this loop never sleeps, and must still notice
		// a dead participant's claim in the way.
		look := quickly
		if i&15 == 15 {
			look = lookForDead
		}
		if err := try(look); err != errRetry {
			return err
		}
		if i < 16 {
			continue
		}
		if i%4096 == 0 {
			// Now and then let any thread of any process run here: on
			// an oversubscribed machine the peer we wait for may be
			// waiting for this very processor. runtime.Gosched yields
			// only to this process's goroutines.
			yieldProcessor()
		} else {
			runtime.Gosched()
		}
		if i%16 != 0 {
			continue
		}
		if until.IsZero() {
			until = time.Now().Add(spin)
		} else if spin > 0 && time.Now().After(until) {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	// Sleep: as the handle's sleeper, or behind it.
	w.blocked.Add(1)
	defer w.blocked.Add(-1)
	for {
		if w.q.closing.Load() {
			return ErrClosed
		}
		w.mu.Lock()
		if !w.sleeping {
			w.sleeping = true
			w.mu.Unlock()
			err := w.sleep(ctx, try)
			w.leave()
			return err
		}
		ch := w.ch
		w.mu.Unlock()
		if err := try(lookForDead); err != errRetry {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sleep is block's loop for the handle's sleeper: announce, retry, sleep on
// the futex, until try gives a result, ctx is done or the handle closes.
func (w *waitSide) sleep(ctx context.Context, try func(look attempt) error) error {
	r := &w.q.ring
	if ctx.Done() != nil {
		// The futex wait cannot watch ctx: wake it when ctx ends. The
		// callback may still run after stop, when this call has
		// returned and Close may have unmapped the segment: it holds a
		// call of its own.
		stop := context.AfterFunc(ctx, func() {
			if c, err := w.q.begin(); err == nil {
				r.kick(w.side)
				w.q.end(c)
			}
		})
		defer stop()
	}
	r.sleepers[w.side][w.word].Or(w.bit) // for Inspect only
	var short time.Duration              // the last short slice; 0 when none
	var shortSince time.Time             // when the short slices began
	for {
		// Retry before announcing: after a wake-up the change is most
		// likely there, and an announcement whose retry succeeds leaves
		// the other side one needless FUTEX_WAKE.
		if err := try(lookForDead); err != errRetry { // model: SLEEP_LOOP TRY(1)
			return err
		}
		if r.isHeldUp(w.side) {
			// Woken by a claimant that has not published yet (it wakes
			// right after its claim): it most likely is publishing now.
			// Look again before announcing, which would leave the bit
			// for nothing if this very claim let us go on.
			if err := w.settle(try); err != errRetry {
				return err
			}
		}
		// Sample the futex word, announce, retry: see the top of this
		// file for why no wake-up can be lost.
		v := r.futex[w.side].Load()               // model: stale[me] = 0
		other := r.announce(w.side)               // model: S1
		if err := try(quickly); err != errRetry { // model: TRY(0)
			return err
		}
		if w.q.closing.Load() {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		slice := idleSlice
		_, held := r.heldUpBy(w.side)             // model: DECIDE_SLICE
		if held || r.claimBefore(w.side, other) { // model: sshort (a short slice may time out)
			// Nobody may wake us: look again soon, and sooner the more
			// recently the claim in the way was made. A live claimant
			// finishes within microseconds unless it is descheduled, so
			// the slices stay short for a recovery timeout; after that
			// the claim is stalled (its owner is checked at each
			// timeout) and they grow to stallSliceMax.
			timeout := time.Duration(w.q.recoveryTimeout.Load())
			if short == 0 {
				short, shortSince = shortSliceMin, time.Now()
				if err := w.settle(try); err != errRetry { // it is most likely being published now
					return err
				}
			} else if time.Since(shortSince) < timeout {
				short = min(2*short, shortSliceMax)
			} else {
				short = min(2*short, stallSliceMax)
			}
			slice = short
			if held {
				slice = min(slice, max(timeout/2, time.Millisecond))
			}
		} else {
			short = 0
		}
		r.counter(sleepCounter[w.side]).Add(1)
		ts := unix.NsecToTimespec(int64(slice))
		// EINTR, EAGAIN, a timeout and a spurious wake-up all mean the
		// same here: look again. The next retry checks for a dead
		// participant's claim in the way (Queue.checkStall).
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(r.futex[w.side])), futexWait, uintptr(v), uintptr(unsafe.Pointer(&ts)), 0, 0) // model: futexWait
	}
}

// yieldProcessor lets another thread of any process run on this processor
// (runtime.Gosched yields only to goroutines of this process): after a
// wake-up, the claimant that woke us right after its claim was most likely
// preempted by our waking, here, before it could publish; and while spinning
// (every 4096th retry), the peer we wait for may need this processor. Never
// on the path of a call that succeeds at once.
func yieldProcessor() {
	unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// settle waits, for up to settleMax, for a claim in the way that is being
// finished (a claimant wakes the other side right after its claim, before
// it copies), retrying: mostly yielding to this process's goroutines, which
// costs no system call (the claimant usually runs on another processor),
// and every 16th step yielding the processor, for a claimant preempted here
// by our waking. A futex slice instead would sleep past the publish, as
// nobody wakes us for it.
func (w *waitSide) settle(try func(attempt) error) error {
	var start time.Time
	for i := 1; ; i++ {
		if i%16 == 0 {
			yieldProcessor()
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > settleMax {
				return errRetry
			}
		} else {
			runtime.Gosched()
		}
		if err := try(quickly); err != errRetry {
			return err
		}
	}
}

// leave ends a sleeper's turn: it withdraws the handle's bit from the
// sleeper bitmap and lets the goroutines behind it retry; those that fail
// come back, and one of them becomes the next sleeper. (The asleep bit in
// the other side's position stays until the next claim clears it: one
// FUTEX_WAKE too many at worst.)
func (w *waitSide) leave() {
	w.q.ring.sleepers[w.side][w.word].And(^w.bit)
	w.mu.Lock()
	w.sleeping = false
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}
