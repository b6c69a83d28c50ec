package mpmc

// Idle waiting and wake-ups.
//
// Each side of the queue (consumers waiting for "not empty", producers
// waiting for "not full") has, in shared memory, a 32-bit futex word and a
// 128-bit waiter bitmap with one bit per participant. Within one process, of
// the goroutines blocked on a side of a handle, one is the handle's sleeper:
// it does the futex wait itself, and the others wait on a channel that the
// sleeper closes when it leaves (with its result, on Close, or on its
// context's end), so that they retry and one of them becomes the next
// sleeper. So a process holds at most one thread in a futex wait per handle
// and side, however many goroutines are blocked; and a woken sleeper goes on
// with its own call at once, with no hand-over to another goroutine.
//
// No lost wake-up. The sleeper reads the futex word, then sets its bit, then
// retries its operation, then sleeps only if the futex word still has the
// value it read. The other side publishes its change, then reads the bitmap;
// if a bit is set it clears the bitmap, bumps the futex word and wakes. All
// of these are sequentially consistent atomics, so either the sleeper's retry
// sees the change, or the waker sees the bit. A bit can also be cleared by an
// earlier waker after it was set; that waker bumps the futex word after
// clearing, and the word was read before the bit was set, so the sleep
// returns at once and the sleeper announces itself again. (Reading the word
// after setting the bit would lose this case: the sleeper could sleep on a
// current word with its bit already gone.)
//
// The other goroutines need no announcement of their own: each retries after
// it has the channel of the current sleeper, and the sleeper leaves (and
// closes that channel) as soon as one retry of its own succeeds. A change
// that lets only the others go on (a message too long for the sleeper's
// buffer, say) makes the sleeper's retry return, too.
//
// No system call under load. The waker's only cost while nobody sleeps is
// loading two words of a line that changes only when sleepers come and go.
// The first waker clears the bitmap, so a burst of messages to a sleeping
// side makes one FUTEX_WAKE, not one per message.
//
// Sleeps are bounded: a sleeper wakes on its own after idleSlice to look
// again, so that a wake-up lost to a peer that died between publishing and
// waking strands nobody for long; and after a shorter slice while its side
// is held up by another participant's claim, so that a dead one is noticed
// (see recover.go).

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
	// full), and so the wait behind a peer that died between publishing
	// and waking. Each slice costs the process a wake-up and a trip
	// through the scheduler (about 100-200 µs of CPU on a small VM): at 2 s
	// an idle consumer stays under 0.1% of a core.
	idleSlice = 2 * time.Second
	// stallSliceMax bounds one futex wait while a claim holds the side up.
	stallSliceMax = 100 * time.Millisecond

	// DefaultSpin is how long a blocked Enqueue or Dequeue retries before it
	// goes to sleep, unless SetSpin says otherwise.
	DefaultSpin = 20 * time.Microsecond
)

// waitSide is one side of one handle: the goroutines of this process waiting
// for that side's condition, and which of them sleeps on the futex.
type waitSide struct {
	q         *Queue
	futex     *atomic.Uint32
	waiters   *[2]atomic.Uint64
	sleeps    *atomic.Uint64 // shared counter: futex sleeps on this side
	wakes     *atomic.Uint64 // shared counter: FUTEX_WAKE calls for this side
	word      int            // this handle's word in waiters
	bit       uint64         // this handle's bit in waiters[word]
	producers bool           // the producers' side (notFull)

	blocked atomic.Int64 // goroutines in the sleep phase of block (for tests and Stats)

	mu       sync.Mutex
	sleeping bool          // one goroutine of this handle is the side's sleeper
	ch       chan struct{} // closed when the sleeper leaves
}

func (w *waitSide) init(q *Queue, off uintptr, sleeps, wakes int, producers bool) {
	w.q = q
	w.futex = q.seg.u32(off + sideFutex)
	w.waiters = (*[2]atomic.Uint64)(unsafe.Pointer(q.seg.u64(off + sideWaiters)))
	w.sleeps = q.counter(sleeps)
	w.wakes = q.counter(wakes)
	w.word, w.bit = int(q.ownerIndex/64), 1<<(q.ownerIndex%64)
	w.producers = producers
	w.ch = make(chan struct{})
}

// wake is called after every change that may let the other side go on. It
// makes a system call only when some participant is recorded as sleeping.
// The publish before it must be visible before the bitmap is read (the
// other half of the sleeper's announce-then-retry): after a release store
// that takes a fence.
func (w *waitSide) wake() {
	fence()
	if w.waiters[0].Load()|w.waiters[1].Load() == 0 {
		return
	}
	if w.waiters[0].Swap(0)|w.waiters[1].Swap(0) == 0 {
		return // another waker got there first
	}
	w.kick()
}

// kick wakes every sleeper of this side, in every process.
func (w *waitSide) kick() {
	w.futex.Add(1)
	w.wakes.Add(1)
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w.futex)), futexWake, 1<<31-1, 0, 0, 0)
}

// kickIfSleeping wakes this handle's sleeper, if it has one.
func (w *waitSide) kickIfSleeping() {
	w.mu.Lock()
	sleeping := w.sleeping
	w.mu.Unlock()
	if sleeping {
		w.kick()
	}
}

// block waits until try succeeds or fails for good, ctx is done or the
// handle is closed, and returns try's first result other than errRetry. The
// caller holds a reference on the handle (Queue.acquire) for the whole wait;
// Close sets closing and wakes the sleeper, and block then returns
// ErrClosed.
func (w *waitSide) block(ctx context.Context, try func(stalls bool) error) error {
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
		if err := try(i&15 == 15); err != errRetry {
			return err
		}
		if i < 16 {
			continue
		}
		runtime.Gosched()
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
		if err := try(true); err != errRetry {
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
func (w *waitSide) sleep(ctx context.Context, try func(stalls bool) error) error {
	if ctx.Done() != nil {
		// The futex wait cannot watch ctx: wake it when ctx ends. The
		// callback may still run after stop, when this call has
		// returned and Close may have unmapped the segment: it takes a
		// reference of its own.
		stop := context.AfterFunc(ctx, func() {
			if ref := w.q.acquire(); ref != nil {
				w.kick()
				ref.Add(-1)
			}
		})
		defer stop()
	}
	for {
		// Sample the futex word, announce, retry: see the top of this
		// file for why no wake-up can be lost.
		v := w.futex.Load()
		w.waiters[w.word].Or(w.bit)
		if err := try(true); err != errRetry {
			return err
		}
		if w.q.closing.Load() {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		slice := idleSlice
		if _, _, stuck := w.q.heldUpBy(w.producers); stuck {
			slice = min(max(time.Duration(w.q.recoveryTimeout.Load())/2, time.Millisecond), stallSliceMax)
		}
		w.sleeps.Add(1)
		ts := unix.NsecToTimespec(int64(slice))
		// EINTR, EAGAIN, a timeout and a spurious wake-up all mean the
		// same here: look again. The next retry checks for a dead
		// participant's claim in the way (Queue.checkStall).
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w.futex)), futexWait, uintptr(v), uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
}

// leave ends a sleeper's turn: it withdraws the handle's bit, so the other
// side stops waking it, and lets the goroutines behind it retry; those that
// fail come back, and one of them becomes the next sleeper.
func (w *waitSide) leave() {
	w.waiters[w.word].And(^w.bit)
	w.mu.Lock()
	w.sleeping = false
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}
