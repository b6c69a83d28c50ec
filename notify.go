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
// No lost wake-up. The sleeper sets its bit, then reads the futex word, then
// re-checks the queue, then sleeps only if the futex word still has the value
// it read. The other side publishes its change, then reads the bitmap; if a
// bit is set it clears the bitmap, bumps the futex word and wakes. All of
// these are sequentially consistent atomics, so either the waker sees the bit
// (and the bumped futex word makes the sleep return at once) or the sleeper's
// re-check sees the change.
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
	sleepSlice = 200 * time.Millisecond

	// DefaultSpin is how long a blocked Enqueue or Dequeue retries before it
	// goes to sleep, unless SetSpin says otherwise.
	DefaultSpin = 20 * time.Microsecond
)

// waitSide is one side of one handle: the goroutines of this process waiting
// for that side's condition, and its sleeper.
type waitSide struct {
	q       *Queue
	futex   *atomic.Uint32
	waiters *[2]atomic.Uint64
	sleeps  *atomic.Uint64 // shared counter: futex sleeps on this side
	wakes   *atomic.Uint64 // shared counter: FUTEX_WAKE calls for this side
	ready   func() bool    // the condition waited for, checked without writing

	mu      sync.Mutex
	blocked int           // goroutines of this handle waiting on ch
	ch      chan struct{} // closed when they should retry
	running bool          // a sleeper goroutine is live
}

func (w *waitSide) init(q *Queue, off uintptr, sleeps, wakes int, ready func() bool) {
	w.q = q
	w.futex = q.seg.u32(off + sideFutex)
	w.waiters = (*[2]atomic.Uint64)(unsafe.Pointer(q.seg.u64(off + sideWaiters)))
	w.sleeps = q.counter(sleeps)
	w.wakes = q.counter(wakes)
	w.ready = ready
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

// register adds the calling goroutine to the blocked set and returns the
// channel that will be closed when it should retry. The caller must re-check
// the queue after register and before waiting on the channel, and call
// unregister afterwards.
func (w *waitSide) register() (<-chan struct{}, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.blocked++
	if !w.running {
		if !w.q.acquire() {
			w.blocked--
			return nil, false
		}
		w.running = true
		go w.sleeper()
	}
	return w.ch, true
}

func (w *waitSide) unregister() {
	w.mu.Lock()
	w.blocked--
	w.mu.Unlock()
}

// broadcast tells every goroutine blocked on this side to retry.
func (w *waitSide) broadcast() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// sleeper waits on the futex for all goroutines of this handle blocked on
// this side, for as long as there are any. It holds a reference on the handle
// (see Queue.acquire), so the segment stays mapped while it runs.
func (w *waitSide) sleeper() {
	defer w.q.release()
	word, bit := w.q.ownerIndex/64, uint64(1)<<(w.q.ownerIndex%64)
	for {
		w.mu.Lock()
		if w.blocked == 0 || w.q.closing.Load() {
			w.running = false
			w.mu.Unlock()
			w.broadcast()
			return
		}
		w.mu.Unlock()

		w.waiters[word].Or(bit)
		v := w.futex.Load()
		if !w.ready() && !w.q.closing.Load() {
			w.sleeps.Add(1)
			ts := unix.NsecToTimespec(int64(sleepSlice))
			// EINTR, EAGAIN, a timeout and a spurious wake-up all mean
			// the same here: look again.
			unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w.futex)), futexWait, uintptr(v), uintptr(unsafe.Pointer(&ts)), 0, 0)
		}
		w.waiters[word].And(^bit)
		if w.ready() || w.q.closing.Load() {
			w.broadcast()
		} else {
			w.q.hook(hookSleeperIdle)
		}
	}
}

// block waits until the side's condition may hold, ctx is done or the handle
// is closed. try is the operation being retried; block returns its first
// result other than errRetry.
func (w *waitSide) block(ctx context.Context, try func() error) error {
	// Spin: retry, backing off from a tight loop to yielding the processor.
	spin := time.Duration(w.q.spin.Load())
	var until time.Time
	for i := 0; spin != 0; i++ {
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
		ch, ok := w.register()
		if !ok {
			return ErrClosed
		}
		err := try()
		if err != errRetry {
			w.unregister()
			return err
		}
		select {
		case <-ch:
			w.unregister()
		case <-ctx.Done():
			w.unregister()
			return ctx.Err()
		}
	}
}
