package mpmc

// Idle waiting and wake-ups.
//
// Each side of the queue (consumers waiting for "not empty", producers
// waiting for "not full") has, in shared memory, a 32-bit futex word and a
// 128-bit waiter bitmap with one bit per participant. Within one process,
// every goroutine blocked on a side of a handle waits on a channel; one
// sleeper goroutine per handle and side does the futex wait for all of them
// and fans the wake-up out. So a process holds at most two threads in futex
// waits per handle, however many goroutines are blocked.
//
// No lost wake-up. The sleeper reads the futex word, then sets its bit, then
// re-checks the queue, then sleeps only if the futex word still has the value
// it read. The other side publishes its change, then reads the bitmap; if a
// bit is set it clears the bitmap, bumps the futex word and wakes. All of
// these are sequentially consistent atomics, so either the sleeper's re-check
// sees the change, or the waker sees the bit. A bit can also be cleared by an
// earlier waker after it was set; that waker bumps the futex word after
// clearing, and the word was read before the bit was set, so the sleep
// returns at once and the sleeper announces itself again. (Reading the word
// after setting the bit would lose this case: the sleeper could sleep on a
// current word with its bit already gone.)
//
// In-process, a goroutine registers (under the side's mutex), then retries,
// then waits for the sleeper's broadcast; the sleeper re-checks after every
// announcement and broadcasts whenever the condition holds, so a change
// published after a goroutine's retry is seen by the sleeper's next check.
// When the last blocked goroutine leaves, it clears the bit so a sleeper
// idling out its slice costs wakers nothing; the next goroutine to register
// sets it again before its retry.
//
// No system call under load. The waker's only cost while nobody sleeps is
// loading two words of a line that changes only when sleepers come and go.
// The first waker clears the bitmap, so a burst of messages to a sleeping
// side makes one FUTEX_WAKE, not one per message.
//
// Sleeps are bounded (sleepSlice): a sleeper wakes on its own now and then to
// re-check, so that no wake-up lost to a peer that died between publishing and
// waking can strand it.

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

	// sleepSlice bounds one futex wait.
	sleepSlice = 100 * time.Millisecond

	// DefaultSpin is how long a blocked Enqueue or Dequeue retries before it
	// goes to sleep, unless SetSpin says otherwise.
	DefaultSpin = 20 * time.Microsecond
)

// waitSide is one side of one handle: the goroutines of this process waiting
// for that side's condition, and its sleeper.
type waitSide struct {
	q         *Queue
	futex     *atomic.Uint32
	waiters   *[2]atomic.Uint64
	sleeps    *atomic.Uint64 // shared counter: futex sleeps on this side
	wakes     *atomic.Uint64 // shared counter: FUTEX_WAKE calls for this side
	ready     func() bool    // the condition waited for, checked without writing
	word      int            // this handle's word in waiters
	bit       uint64         // this handle's bit in waiters[word]
	producers bool           // the producers' side (notFull)

	mu        sync.Mutex
	ch        chan struct{} // closed by the sleeper when goroutines should retry
	waiting   int           // goroutines waiting on the current ch
	running   bool          // a sleeper goroutine is live
	announced bool          // this handle's bit was set and not cleared by us
}

func (w *waitSide) init(q *Queue, off uintptr, sleeps, wakes int, ready func() bool) {
	w.q = q
	w.futex = q.seg.u32(off + sideFutex)
	w.waiters = (*[2]atomic.Uint64)(unsafe.Pointer(q.seg.u64(off + sideWaiters)))
	w.sleeps = q.counter(sleeps)
	w.wakes = q.counter(wakes)
	w.ready = ready
	w.word, w.bit = int(q.ownerIndex/64), 1<<(q.ownerIndex%64)
	w.ch = make(chan struct{})
}

// wake is called after every change that may let the other side go on. It
// makes a system call only when some participant is recorded as sleeping.
func (w *waitSide) wake() {
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

// kickIfSleeping wakes this handle's sleeper, if it has one running.
func (w *waitSide) kickIfSleeping() {
	w.mu.Lock()
	running := w.running
	w.mu.Unlock()
	if running {
		w.kick()
	}
}

// register adds the calling goroutine to the waiting set and returns the
// channel that will be closed when it should retry. The caller must retry
// after register and before waiting on the channel, and then call unregister
// with the channel unless it was closed.
//
// If a sleeper is running but the last goroutine to leave withdrew the
// handle's bit, register announces it again before the caller's retry, so
// that a change published after that retry reaches the sleeper.
func (w *waitSide) register() (chan struct{}, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running {
		if !w.q.acquire() {
			return nil, false
		}
		w.running = true
		go w.sleeper()
	} else if !w.announced {
		w.waiters[w.word].Or(w.bit)
		w.announced = true
	}
	w.waiting++
	return w.ch, true
}

// unregister removes a goroutine that stopped waiting on ch before it was
// closed. The last one out withdraws the handle's bit, so that a sleeper
// with nobody left to wake costs the other side no system call while it
// idles out its slice.
func (w *waitSide) unregister(ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch != w.ch {
		return // closed already: broadcast reset the count
	}
	w.waiting--
	// The segment may be unmapped already if the handle is closing (Close
	// clears the bit itself, in Queue.leave): touch it only under a ref.
	if w.waiting == 0 && w.announced && w.q.acquire() {
		w.waiters[w.word].And(^w.bit)
		w.announced = false
		w.q.release()
	}
}

// broadcast tells every goroutine waiting on this side to retry.
func (w *waitSide) broadcast() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.waiting = 0
	w.mu.Unlock()
}

// sleeper waits on the futex for the goroutines of this handle waiting on
// this side, until it has told them to retry, nobody waits any more or the
// handle closes. It holds a reference on the handle (see Queue.acquire), so
// the segment stays mapped while it runs.
func (w *waitSide) sleeper() {
	defer w.q.release()
	for {
		w.mu.Lock()
		if w.waiting == 0 || w.q.closing.Load() {
			if w.announced {
				w.waiters[w.word].And(^w.bit)
				w.announced = false
			}
			w.running = false
			w.mu.Unlock()
			w.broadcast() // on Close, some may still wait
			return
		}
		// Sample the futex word, announce, re-check: see the top of
		// this file for why no wake-up can be lost.
		v := w.futex.Load()
		w.waiters[w.word].Or(w.bit)
		w.announced = true
		w.mu.Unlock()
		if !w.ready() && !w.q.closing.Load() {
			w.sleeps.Add(1)
			ts := unix.NsecToTimespec(int64(sleepSlice))
			// EINTR, EAGAIN, a timeout and a spurious wake-up all mean
			// the same here: look again.
			unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w.futex)), futexWait, uintptr(v), uintptr(unsafe.Pointer(&ts)), 0, 0)
		}
		if w.ready() || w.q.closing.Load() || w.q.checkStall(w.producers) {
			// Withdraw first: the other side need not wake a handle
			// that is about to retry anyway. The goroutines retry;
			// those that fail register again, and announce again.
			w.mu.Lock()
			if w.announced {
				w.waiters[w.word].And(^w.bit)
				w.announced = false
			}
			w.mu.Unlock()
			w.broadcast()
		} else {
			hook(hookSleeperIdle)
		}
	}
}

// block waits until the side's condition may hold, ctx is done or the handle
// is closed. try is the operation being retried; block returns its first
// result other than errRetry. The caller holds a reference on the handle
// (Queue.acquire) for the whole wait; Close sets closing and wakes the
// sleeper, and block then returns ErrClosed.
func (w *waitSide) block(ctx context.Context, try func() error) error {
	// Spin: retry, backing off from a tight loop to yielding the processor.
	spin := time.Duration(w.q.spin.Load())
	var until time.Time
	for i := 0; spin != 0; i++ {
		if w.q.closing.Load() {
			return ErrClosed
		}
		if err := try(); err != errRetry {
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
	// Sleep.
	for {
		if w.q.closing.Load() {
			return ErrClosed
		}
		ch, ok := w.register()
		if !ok {
			return ErrClosed
		}
		err := try()
		if err != errRetry {
			w.unregister(ch)
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			w.unregister(ch)
			return ctx.Err()
		}
	}
}
