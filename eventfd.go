package mpmc

// Eventfd notification (Config.Eventfd): the queue signals an eventfd per
// side, besides the futex, so that an event loop can wait for it next to
// its sockets (epoll in C, the netpoller in Go).
//
// It is the wake protocol of ring.go, invariant 5, with the eventfd as one
// more thing a wake-up does. A waiter of side s:
//
//  1. arms (Events.Arm): sets the asleep bit in the other side's position
//     (ring.announce, S1), then re-checks whether s can proceed (a message
//     at the head for consumers, a free slot at the tail for producers, or
//     Shutdown). "Ready" means: do not wait, drain now.
//  2. waits until the eventfd is readable (epoll_wait, or Events.Wait in
//     Go, which parks the goroutine in the netpoller and holds no thread),
//     for at most the poll hint Arm returned;
//  3. consumes the event (Events.Consume: read(2) of the eventfd, which
//     resets its counter; Wait does it itself);
//  4. drains with TryDequeue (TryEnqueue) until ErrEmpty (ErrFull), and
//     arms again.
//
// The claimant of the other side whose position CAS (E2, D2) sees the
// asleep bit clears it and, straight after claiming, bumps the futex word,
// makes FUTEX_WAKE and writes 1 to side s's eventfd (ring.kick): so the
// eventfd is written only when a waiter was recorded, and a burst of claims
// writes it once. Every claim after step 1 sees the bit, so either the
// re-check of step 1 sees the change or the eventfd becomes readable. A
// claim made before step 1 does not see the bit: announce's result says
// so (ring.claimBefore), and Arm then returns a short poll hint (from 50 µs,
// doubling to 2 ms, later to 100 ms) instead of the idle one (2 s, which
// bounds a wake-up lost to a claimant killed between its claim and its
// write).
//
// The eventfds are shared by every process of the queue (Send hands them
// over with the segment), and reading one resets it for all: a waiter that
// consumes an event must drain until ErrEmpty (ErrFull) before it waits
// again, so that no message is left behind for a waiter of another process
// that missed the event; such a waiter is woken by the next claim that
// sees its bit, or its poll hint.
//
// The descriptors belong to the handle, not to shared memory, and only
// processes that hold them can signal them: the header flag segmentEventfd
// marks such a segment, and Open and OpenFile refuse it (ErrNoEventfd).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// eventOne is what ring.kick writes to an eventfd.
var eventOne uint64 = 1

// Events is one side's eventfd of a queue made with Config.Eventfd: the
// queue makes it readable when that side may proceed after a waiter armed
// it. Its methods are safe for concurrent use.
type Events struct {
	q    *Queue
	side side
	fd   int
	f    *os.File // fd, registered with Go's netpoller (nonblocking)

	short      atomic.Int64 // the last short poll hint, 0 when none (time.Duration)
	shortSince atomic.Int64 // when the short hints began, unix nanoseconds

	mu       sync.Mutex
	deadline time.Time // the read deadline set on f, the earliest wanted
}

// NotEmpty returns the consumers' eventfd: readable after an Arm once a
// message may be dequeued, or the queue was shut down. It is nil unless
// the queue was made with Config.Eventfd.
func (q *Queue) NotEmpty() *Events { return q.events[consumers] }

// NotFull returns the producers' eventfd: readable after an Arm once a
// slot may be free, or the queue was shut down. It is nil unless the queue
// was made with Config.Eventfd.
func (q *Queue) NotFull() *Events { return q.events[producers] }

// Fd returns the eventfd's descriptor, to register for reading (EPOLLIN)
// with an event loop. It is non-blocking and stays the handle's: do not
// close it (Close does), and do not wrap it in an os.File.
func (e *Events) Fd() int { return e.fd }

// Arm announces a waiter on the side, then checks whether the side can
// proceed. If ready, the caller must not wait: it drains with TryDequeue
// (TryEnqueue) at once. Otherwise the eventfd becomes readable when the
// side may proceed, and the caller waits for it (epoll_wait) for at most
// poll, then consumes it (Consume), drains, and arms again. poll is short
// when a claim made before the announcement may hold the side up (its
// claimant will not signal): waiting longer than poll may strand the
// waiter. Arm returns ErrClosed after Close of the handle.
func (e *Events) Arm() (ready bool, poll time.Duration, err error) {
	c, err := e.q.begin()
	if err != nil {
		return false, 0, err
	}
	defer e.q.end(c)
	ready, short := e.q.ring.arm(e.side)
	if ready {
		e.short.Store(0)
		return true, 0, nil
	}
	if !short {
		e.short.Store(0)
		return false, idleSlice, nil
	}
	prev := time.Duration(e.short.Load())
	var next time.Duration
	switch {
	case prev == 0:
		next = shortSliceMin
		e.shortSince.Store(time.Now().UnixNano())
	case time.Since(time.Unix(0, e.shortSince.Load())) < time.Duration(e.q.recoveryTimeout.Load()):
		next = min(2*prev, shortSliceMax)
	default:
		next = min(2*prev, stallSliceMax)
	}
	e.short.Store(int64(next))
	return false, next, nil
}

// Consume reads the eventfd, resetting it, without waiting: call it when
// the eventfd was readable, before draining. Nothing to read is no error.
func (e *Events) Consume() error {
	c, err := e.q.begin()
	if err != nil {
		return err
	}
	defer e.q.end(c)
	var buf [8]byte
	if _, err := unix.Read(e.fd, buf[:]); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("mpmc: read eventfd: %w", err)
	}
	return nil
}

// Wait is the event-loop wait in Go: it arms, and unless the side is ready
// it waits for the eventfd in Go's netpoller (the goroutine holds no OS
// thread) for at most the poll hint, and consumes the event. It returns nil
// when the caller should try again (drain with TryDequeue or TryEnqueue:
// the side may proceed, or the hint ran out), ctx.Err() when ctx is done,
// and ErrClosed once the handle is closed.
func (e *Events) Wait(ctx context.Context) error {
	ready, poll, err := e.Arm()
	if err != nil || ready {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rc, err := e.f.SyscallConn()
	if err != nil {
		return ErrClosed
	}
	deadline := time.Now().Add(poll)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	e.setDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { e.setDeadline(time.Now()) })
	defer stop()
	// Woken by the netpoller, return even when another waiter consumed
	// the event first: every waiter woken by an event tries again.
	var buf [8]byte
	calls := 0
	err = rc.Read(func(fd uintptr) bool {
		calls++
		_, err := unix.Read(int(fd), buf[:])
		return err != unix.EAGAIN || calls > 1
	})
	switch {
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		if err := ctx.Err(); err != nil {
			return err
		}
		return nil
	case e.q.closing.Load(), errors.Is(err, os.ErrClosed):
		return ErrClosed // Close closed f under us
	}
	return fmt.Errorf("mpmc: wait on eventfd: %w", err)
}

// setDeadline makes f's read deadline the earliest one a waiter needs: the
// deadline is shared by every goroutine waiting on f, and a later one must
// not delay a waiter with a short poll hint (those woken early just try
// again).
func (e *Events) setDeadline(t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.deadline.After(time.Now()) && !t.Before(e.deadline) {
		return
	}
	e.deadline = t
	e.f.SetReadDeadline(t)
}

// arm is Events.Arm's protocol step: re-check, announce (S1), re-check.
// short says a claim made before the announcement, or a claim stalled at
// the head, may hold side s up, so that no wake-up can be counted on.
func (r *ring) arm(s side) (ready, short bool) {
	if r.ready(s) {
		return true, false
	}
	other := r.announce(s)
	if r.ready(s) {
		return true, false
	}
	_, held := r.heldUpBy(s)
	return false, held || r.claimBefore(s, other)
}

// ready reports whether side s can proceed now: the head slot published
// (for consumers), the tail slot free (for producers), or Shutdown.
func (r *ring) ready(s side) bool {
	if r.shutdown.Load() != 0 {
		return true
	}
	if s == consumers {
		d := r.pos[consumers].Load() & posMask
		return seqDiff(r.slot(d).seq.Load(), d) == 1
	}
	e := r.pos[producers].Load() & posMask
	return seqDiff(r.slot(e).seq.Load(), e) == 0
}

// newEventfd makes one side's eventfd.
func newEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("mpmc: eventfd: %w", err)
	}
	return fd, nil
}

// withEventfds gives a new queue its eventfds if cfg asks for them.
func (q *Queue) withEventfds(cfg Config) error {
	if !cfg.Eventfd {
		return nil
	}
	var fds [2]int
	for s := range fds {
		fd, err := newEventfd()
		if err != nil {
			if s == 1 {
				unix.Close(fds[0])
			}
			return err
		}
		fds[s] = fd
	}
	q.setEventfds(fds)
	return nil
}

// setEventfds makes fds (by side, nonblocking eventfds) the handle's.
func (q *Queue) setEventfds(fds [2]int) {
	for s, fd := range fds {
		unix.SetNonblock(fd, true) // in case a process on the way made it blocking
		name := "eventfd:notfull"
		if side(s) == consumers {
			name = "eventfd:notempty"
		}
		q.events[s] = &Events{q: q, side: side(s), fd: fd, f: os.NewFile(uintptr(fd), name)}
		q.ring.efd[s] = int32(fd)
	}
}

// closeEventfds closes the handle's eventfds, once no call is in flight.
func (q *Queue) closeEventfds() {
	for s, e := range q.events {
		if e != nil {
			q.ring.efd[s] = -1
			e.f.Close() // wakes goroutines in Wait with ErrClosed
		}
	}
}

// isEventfd reports whether fd is an eventfd.
func isEventfd(fd int) bool {
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	return err == nil && target == "anon_inode:[eventfd]"
}
