// Package mpmc is a bounded multi-producer multi-consumer queue that lives in
// a shared-memory segment, so that many operating-system processes can
// enqueue and dequeue on it at once, at memory speed.
//
// The queue is Vyukov's bounded MPMC design: every slot carries a sequence
// number and producers and consumers claim positions with compare-and-swap,
// never with a lock. A side that finds the queue empty (or full) spins
// briefly, then sleeps on a shared futex; a wake-up system call is made only
// when someone is recorded as sleeping, so under load no process makes any
// system call.
//
// Messages are byte strings of 0 to SlotSize bytes, copied in and out. Each
// message whose Enqueue succeeded is delivered to exactly one consumer
// (unless a consumer process dies while taking it: see Config.Redeliver),
// and the messages of one producer reach any one consumer in the order they
// were enqueued.
//
// One process creates the segment with Create; others join it with Open.
// Every handle (every Create or Open) registers as a participant of the
// segment, and holds a kernel lock that is released when its process dies,
// so that a claim left behind by a dead process can be told from the claim of
// a slow one.
package mpmc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the queue. Each is a sentinel: test with errors.Is, since
// it may be wrapped with details.
var (
	// ErrFull is returned by TryEnqueue when no slot is free.
	ErrFull = errors.New("mpmc: queue is full")
	// ErrEmpty is returned by TryDequeue when no message is ready.
	ErrEmpty = errors.New("mpmc: queue is empty")
	// ErrClosed is returned by every call on a handle after Close, by
	// enqueues after Shutdown, and by dequeues after Shutdown once the queue
	// is drained.
	ErrClosed = errors.New("mpmc: queue is closed")
	// ErrTooLarge is returned when a message is longer than SlotSize.
	ErrTooLarge = errors.New("mpmc: message larger than slot size")
	// ErrBadSegment is returned, wrapped with the precise reason, when a file
	// is not a valid queue segment or shared memory holds something the
	// protocol cannot produce.
	ErrBadSegment = errors.New("mpmc: bad segment")
	// ErrTooManyParticipants is returned by Create and Open when every entry
	// of the segment's participants table belongs to a live handle.
	ErrTooManyParticipants = errors.New("mpmc: participants table is full")
	// ErrInvalidConfig is returned, wrapped with the reason, by Create for a
	// Config it cannot honour.
	ErrInvalidConfig = errors.New("mpmc: invalid config")
	// ErrBusy is returned, wrapped with the reason, when something else
	// holds what the call needs for longer than it may wait: by Open when a
	// Clean holds the whole participants table for longer than Open waits
	// (2 s; retry later: once Clean lets go, the segment is either in use
	// and can be joined, or removed, and Open fails with an error matching
	// fs.ErrNotExist); by Close while a zero-copy Reservation or Taken of
	// the handle is outstanding (commit, abort or release it first); and by
	// TryReserve and TryTake when the handle holds 16 already.
	ErrBusy = errors.New("mpmc: queue is busy")
	// ErrNotHeld is returned by the methods of a Reservation or Taken that
	// was already committed, aborted or released.
	ErrNotHeld = errors.New("mpmc: reservation or message no longer held")
)

// errRetry is what a try function passed to waitSide.block returns to ask
// for another attempt later.
var errRetry = errors.New("retry")

// errPending is what the ring returns when the head position is claimed by
// a producer that has not published yet: empty for now, but not drained.
var errPending = errors.New("pending")

// Config is the geometry of a new queue.
type Config struct {
	// Capacity is the number of slots: a power of two, at least 2.
	Capacity int
	// SlotSize is the largest message in bytes, at least 1.
	SlotSize int
	// Perm is the mode of the segment file; zero means 0600. It is applied
	// exactly, regardless of the umask.
	Perm os.FileMode
	// Redeliver selects what becomes of a message that a consumer had
	// taken when its process died, before Dequeue returned it. By default
	// the message is dropped (and counted in Stats.RecoveredReads): every
	// message is delivered at most once. With Redeliver, recovery enqueues
	// it again, once, for another consumer: its Dequeue never returned, so
	// this is no duplicate, but it arrives out of its producer's order. This
	// is best effort, not a promise of at-least-once: the message is still
	// dropped (counted in RecoveredReads but not in Redelivered) if the
	// queue stays full for 10ms after recovery freed the slot, if Shutdown
	// came first, if the recovering process dies too, or if it had been
	// redelivered once already.
	Redeliver bool
	// Eventfd makes the queue signal an eventfd per side, besides the
	// futex, whenever it wakes that side, so that an event loop can wait
	// for the queue next to its sockets (eventfd.go: Queue.Events). The
	// eventfds belong to the creating handle and are handed over with
	// Send; such a queue can only be joined with Receive (Open and
	// OpenFile refuse it with ErrNoEventfd), so that every participant
	// signals them.
	Eventfd bool
	// HugePages backs the segment with huge pages, or makes Create,
	// CreateAnonymous and CreateSysV fail with ErrNoHugePages
	// (hugepages.go).
	HugePages bool
}

// Queue is one process's handle on a queue segment. Its methods are safe for
// concurrent use by many goroutines. A process may hold several handles on the
// same segment; each is a participant of its own.
//
// Ordering: an Enqueue (or a Commit) happens before the Dequeue (or Take)
// that returns its message, in every process: whatever the producer wrote
// before it enqueued is visible to the consumer once Dequeue returns.
type Queue struct {
	ring ring // the shared-memory protocol over seg's mapping
	seg  *segment
	path string
	self int // this handle's participant index

	wait            [2]waitSide // by side: producers wait for room, consumers for messages
	spin            atomic.Int64
	recoveryTimeout atomic.Int64 // time.Duration; see SetRecoveryTimeout
	stall           [2]stall     // by side: the claim that side is held up by

	events [2]*Events // by side: the eventfds of a queue with Config.Eventfd, or nil (eventfd.go)

	held    atomic.Int64 // zero-copy holds outstanding, | heldClosing once Close began
	closing atomic.Bool
	closeMu sync.Mutex
	closed  bool

	// Calls in flight (pin.go). The padding keeps their lines from the
	// fields above and from a neighbouring handle's.
	_      [hotStride]byte
	refs   inflight
	busy   [pinnedRecords]busyWord
	pinned [pinnedRecords]*atomic.Uint64 // record k of this handle's entry, for processor k
}

const heldClosing = 1 << 62

// Create creates a new queue segment at path (for example a file under
// /dev/shm) with the geometry of cfg, and returns a handle on it. It fails
// with an error matching fs.ErrExist if path exists: of several processes
// creating the same path at once, exactly one succeeds. The whole segment is
// reserved up front, so a full file system fails here rather than later.
func Create(path string, cfg Config) (*Queue, error) {
	g, flags, err := cfg.check()
	if err != nil {
		return nil, err
	}
	seg, err := createSegment(path, g, cfg.Perm, flags)
	if err != nil {
		return nil, err
	}
	if cfg.HugePages && hugePageSizeOf(seg.f) == 0 {
		if err := seg.adviseHuge(); err != nil {
			seg.unmap()
			os.Remove(path)
			return nil, fmt.Errorf("mpmc: create %s: %w", path, err)
		}
	}
	q, err := newQueue(seg, path, 0)
	if err == nil {
		err = q.withEventfds(cfg)
	}
	if err != nil {
		seg.unmap()
		os.Remove(path)
		return nil, err
	}
	return q, nil
}

// check validates cfg and returns the geometry and header flags it asks
// for.
func (cfg Config) check() (geometry, uint32, error) {
	if cfg.Capacity < 0 || cfg.SlotSize < 0 {
		return geometry{}, 0, fmt.Errorf("%w: capacity %d, slot size %d", ErrInvalidConfig, cfg.Capacity, cfg.SlotSize)
	}
	if cfg.Perm&^os.ModePerm != 0 {
		return geometry{}, 0, fmt.Errorf("%w: perm %v has bits other than permissions", ErrInvalidConfig, cfg.Perm)
	}
	g, err := newGeometry(uint64(cfg.Capacity), uint64(cfg.SlotSize))
	if err != nil {
		return geometry{}, 0, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	var flags uint32
	if cfg.Redeliver {
		flags |= segmentRedeliver
	}
	if cfg.Eventfd {
		flags |= segmentEventfd
	}
	return g, flags, nil
}

// Open joins the existing queue segment at path. The file is fully validated
// before it is mapped: a file that is not a queue, has another layout
// version, an impossible geometry or a size that does not match its header is
// refused with an error wrapping ErrBadSegment; a valid queue created with
// Config.Eventfd is refused with ErrNoEventfd (join it with Receive). If the
// segment is still being created by another process, Open waits for it for
// a short while.
func Open(path string) (*Queue, error) {
	for attempt := 1; ; attempt++ {
		seg, err := openSegment(path)
		if err != nil {
			return nil, err
		}
		if err := refuseEventfd(seg, "open "+path); err != nil {
			return nil, err
		}
		q, err := newQueue(seg, path, -1)
		if err != nil {
			seg.unmap()
			return nil, fmt.Errorf("mpmc: open %s: %w", path, err)
		}
		// A segment removed (by Clean, say) between our open and our
		// join would leave us on a file nobody else can find: check it
		// is still the one at path now that we hold a participant lock.
		// A Clean may have moved it away for a moment, to check the file
		// it found there: it puts a file in use back (clean.go).
		if seg.settleAt(path, openInitWait) {
			return q, nil
		}
		q.Close()
		// Replaced by another segment since: join that one instead.
		if _, err := os.Lstat(path); err != nil || attempt == openAttempts {
			return nil, fmt.Errorf("mpmc: open %s: segment removed while opening: %w", path, fs.ErrNotExist)
		}
	}
}

// openAttempts bounds how many times Open starts again on finding its
// segment replaced at its path while it joined.
const openAttempts = 3

// newQueue registers a participant (index, or any free one if index < 0) and
// builds the handle.
func newQueue(seg *segment, path string, index int) (*Queue, error) {
	q := &Queue{seg: seg, path: path}
	q.ring = newRing(seg.mem, seg.geometry, seg.flags, func(i int) (bool, error) { return participantAlive(seg.f, i) })
	q.spin.Store(int64(DefaultSpin))
	q.recoveryTimeout.Store(int64(DefaultRecoveryTimeout))
	if err := q.join(index); err != nil {
		return nil, err
	}
	q.ring.self = q.self
	for k := range q.pinned {
		q.pinned[k] = q.ring.record(q.self, k)
	}
	q.wait[producers].init(q, producers)
	q.wait[consumers].init(q, consumers)
	if index < 0 {
		// Joining an existing segment: whoever held claims in it may
		// have died (all of them, on a restart).
		q.recoverAll()
	}
	return q, nil
}

// recoverAll recovers every claim of a dead participant in the ring, and
// enqueues again the messages to redeliver once every slot it freed is free.
func (q *Queue) recoverAll() {
	rec := q.takeRecord()
	for _, msg := range q.ring.recoverAll(rec) {
		q.enqueueAgain(rec, msg)
	}
	rec.Store(0)
}

func (q *Queue) tooLarge(n int) error {
	return fmt.Errorf("%w: %d bytes, slot size %d", ErrTooLarge, n, q.ring.slotSize)
}

// TryEnqueue copies msg into the queue if a slot is free, without waiting.
// It returns nil, ErrFull, ErrTooLarge or ErrClosed (after Close of this
// handle or Shutdown of the queue).
func (q *Queue) TryEnqueue(msg []byte) error {
	if uint64(len(msg)) > q.ring.slotSize {
		return q.tooLarge(len(msg))
	}
	if len(msg) <= pinLimit {
		if c, ok := q.pin(); ok {
			err := q.ring.enqueue1(c.rec, msg)
			if err != ErrFull || !q.ring.isHeldUp(producers) {
				q.unpin(c)
				return err
			}
			q.unpin(c) // full, and a claim is in the way: see below
		}
	}
	msgs := [1][]byte{msg}
	_, err := q.tryEnqueue(msgs[:], pinLimit+1)
	return err
}

// tryEnqueue enqueues as many of msgs as fit now, in order (bytes is
// their total size).
func (q *Queue) tryEnqueue(msgs [][]byte, bytes int) (int, error) {
	done := 0
	_, err := q.tryOnce(producers, bytes, func(rec *atomic.Uint64, look attempt) (int, error) {
		return 0, q.enqueueStalls(rec, msgs, &done, look)
	})
	return done, err
}

// tryOnce makes the attempt try of side s now: on the pinned path when it
// can (bytes bounds what it copies), then once more, unpinned and looking
// for a dead claimant in the way, if it found the side held up by a claim.
// try returns how many messages it moved.
func (q *Queue) tryOnce(s side, bytes int, try func(rec *atomic.Uint64, look attempt) (int, error)) (int, error) {
	stuck, moved := stuckErr[s], 0
	if bytes <= pinLimit {
		if c, ok := q.pin(); ok {
			n, err := try(c.rec, quickly)
			held := err == stuck && q.ring.isHeldUp(s)
			q.unpin(c)
			if !held {
				return n, err
			}
			moved = n
		}
	}
	c, err := q.beginClaiming()
	if err != nil {
		return moved, err
	}
	defer q.end(c)
	n, err := try(c.rec, lookForDead)
	return moved + n, err
}

// stuckErr is what an attempt of each side returns when it cannot go on.
var stuckErr = [2]error{producers: ErrFull, consumers: ErrEmpty}

// enqueueStalls is enqueueSome of what is left of msgs with, if stalls, a
// look for a dead participant's claim in the way when the queue is full.
func (q *Queue) enqueueStalls(rec *atomic.Uint64, msgs [][]byte, done *int, look attempt) error {
	err := q.enqueueSome(rec, msgs[*done:], done)
	if err == ErrFull && look == lookForDead && q.checkStall(producers, rec) {
		err = q.enqueueSome(rec, msgs[*done:], done) // a dead participant's claim was in the way
	}
	return err
}

// enqueueSome enqueues msgs in as many claims as it takes, adding to *done,
// until all are in or the queue is full.
func (q *Queue) enqueueSome(rec *atomic.Uint64, msgs [][]byte, done *int) error {
	if q.ring.shutdown.Load() != 0 {
		return ErrClosed
	}
	for len(msgs) > 0 {
		n, err := q.ring.enqueue(rec, msgs)
		*done += n
		if err != nil {
			return err
		}
		if n < len(msgs) && n < min(int(q.ring.capacity), maxBatch) {
			// The claim stopped at a slot that is not free: the
			// queue is full now.
			return ErrFull
		}
		msgs = msgs[n:]
	}
	return nil
}

// TryDequeue copies the next message into buf and returns its length, without
// waiting. It returns ErrEmpty if no message is ready, io.ErrShortBuffer if
// buf is shorter than the message (which then stays queued), and ErrClosed
// after Close of this handle, or after Shutdown once the queue is drained.
func (q *Queue) TryDequeue(buf []byte) (int, error) {
	if min(uint64(len(buf)), q.ring.slotSize) <= pinLimit {
		if c, ok := q.pin(); ok {
			shut := q.ring.shutdown.Load() != 0 // before looking: ring.go, invariant 6
			n, err := q.ring.dequeue1(c.rec, buf)
			switch {
			case err == ErrEmpty && shut:
				err = ErrClosed
			case err == errPending:
				err = ErrEmpty
				if q.ring.isHeldUp(consumers) {
					q.unpin(c)
					goto slow // a claim is in the way: see below
				}
			}
			q.unpin(c)
			return n, err
		}
	}
slow:
	bufs, sizes := [1][]byte{buf}, [1]int{}
	n, err := q.tryDequeue(bufs[:], sizes[:], pinLimit+1)
	if n == 0 {
		return 0, err
	}
	return sizes[0], err
}

// tryDequeue takes the messages available now, up to the buffers given
// (bytes bounds what it copies).
func (q *Queue) tryDequeue(bufs [][]byte, sizes []int, bytes int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	return q.tryOnce(consumers, bytes, func(rec *atomic.Uint64, look attempt) (int, error) {
		return q.dequeueStalls(rec, bufs, sizes, look)
	})
}

// dequeueSome is one attempt, with Shutdown's drained rule (ring.go,
// invariant 6): the flag is read before looking.
func (q *Queue) dequeueSome(rec *atomic.Uint64, bufs [][]byte, sizes []int) (int, error) {
	shut := q.ring.shutdown.Load() != 0 // model: SHUT_BEFORE
	n, err := q.ring.dequeue(rec, bufs, sizes)
	switch {
	case err == errPending:
		err = ErrEmpty
	case err == ErrEmpty && shut:
		err = ErrClosed
	}
	return n, err
}

// dequeueStalls is dequeueSome with, if stalls, a look for a dead producer's
// claim at the head.
func (q *Queue) dequeueStalls(rec *atomic.Uint64, bufs [][]byte, sizes []int, look attempt) (int, error) {
	n, err := q.dequeueSome(rec, bufs, sizes)
	if err == ErrEmpty && look == lookForDead && q.checkStall(consumers, rec) {
		n, err = q.dequeueSome(rec, bufs, sizes) // a dead participant's claim was in the way
	}
	return n, err
}

// Enqueue copies msg into the queue, waiting while it is full. It returns
// ctx.Err() if ctx is done first, and otherwise what TryEnqueue returns other
// than ErrFull.
func (q *Queue) Enqueue(ctx context.Context, msg []byte) error {
	if err := q.TryEnqueue(msg); err != ErrFull {
		return err
	}
	msgs := [1][]byte{msg}
	_, err := q.enqueueWait(ctx, msgs[:], 0, len(msg))
	return err
}

// enqueueWait enqueues msgs[done:], waiting for room (bytes is the size of
// the longest message), and returns how many of msgs are in.
func (q *Queue) enqueueWait(ctx context.Context, msgs [][]byte, done, bytes int) (int, error) {
	c, err := q.begin()
	if err != nil {
		return done, err
	}
	defer q.end(c)
	err = q.wait[producers].block(ctx, func(look attempt) error {
		var err error
		if p, ok := q.pinFor(bytes, look); ok {
			err = q.enqueueSome(p.rec, msgs[done:], &done)
			q.unpin(p)
		} else {
			// A record for this attempt only, not for the whole wait: a
			// handle has few pooled records, and any number of
			// goroutines may wait.
			rec := q.takeRecord()
			err = q.enqueueStalls(rec, msgs, &done, look)
			rec.Store(0)
		}
		if err == ErrFull {
			return errRetry
		}
		return err
	})
	return done, err
}

// Dequeue copies the next message into buf and returns its length, waiting
// while the queue is empty. It returns ctx.Err() if ctx is done first, and
// otherwise what TryDequeue returns other than ErrEmpty.
func (q *Queue) Dequeue(ctx context.Context, buf []byte) (int, error) {
	if n, err := q.TryDequeue(buf); err != ErrEmpty {
		return n, err
	}
	bufs, sizes := [1][]byte{buf}, [1]int{}
	n, err := q.dequeueWait(ctx, bufs[:], sizes[:], min(len(buf), int(q.ring.slotSize)))
	if n == 0 {
		return 0, err
	}
	return sizes[0], err
}

// dequeueWait waits until at least one message is available and takes
// those available, up to len(bufs); bytes bounds what it copies.
func (q *Queue) dequeueWait(ctx context.Context, bufs [][]byte, sizes []int, bytes int) (int, error) {
	c, err := q.begin()
	if err != nil {
		return 0, err
	}
	defer q.end(c)
	var n int
	err = q.wait[consumers].block(ctx, func(look attempt) error {
		if p, ok := q.pinFor(bytes, look); ok {
			n, err = q.dequeueSome(p.rec, bufs, sizes)
			q.unpin(p)
		} else {
			rec := q.takeRecord() // for this attempt only, as in enqueueWait
			n, err = q.dequeueStalls(rec, bufs, sizes, look)
			rec.Store(0)
		}
		if err == ErrEmpty {
			return errRetry
		}
		return err
	})
	return n, err
}

// pinFor pins an attempt of a waiting call that copies bytes, unless it
// checks for stalls (which makes system calls) or copies too much.
func (q *Queue) pinFor(bytes int, look attempt) (call, bool) {
	if look == lookForDead || bytes > pinLimit {
		return call{}, false
	}
	return q.pin()
}

// Shutdown closes the queue for every process: enqueues fail with ErrClosed
// from then on, dequeues drain the messages left and then fail with
// ErrClosed, and every sleeping Enqueue and Dequeue, in every process, wakes.
// An Enqueue that runs concurrently with Shutdown either fails with ErrClosed
// or succeeds; every message whose Enqueue succeeded, before or during
// Shutdown, is delivered before consumers see ErrClosed.
// Shutdown is idempotent; it does not release this handle (see Close).
func (q *Queue) Shutdown() error {
	c, err := q.begin()
	if err != nil {
		return err
	}
	defer q.end(c)
	q.ring.shutdown.Store(1) // model: Admin Shutdown
	q.ring.kick(consumers)
	q.ring.kick(producers)
	return nil
}

// Close releases this handle: it leaves the participants table and unmaps
// the segment once no call on the handle is in flight. Goroutines of this
// process blocked on the handle return ErrClosed. Close does not affect other
// handles or processes, and does not remove the segment file. While a
// Reservation or Taken of the handle is outstanding, Close does nothing and
// returns ErrBusy. Calls after Close return ErrClosed, including Close
// itself.
func (q *Queue) Close() error {
	q.closeMu.Lock()
	defer q.closeMu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if !q.held.CompareAndSwap(0, heldClosing) {
		return fmt.Errorf("%w: %d zero-copy holds outstanding", ErrBusy, q.held.Load())
	}
	q.closing.Store(true)
	barrierAll() // see pin.go
	// Wake our own sleepers, if any (a futex wake reaches every
	// process's sleepers; theirs wake spuriously and re-check).
	q.wait[consumers].kickIfSleeping()
	q.wait[producers].kickIfSleeping()
	for d := time.Microsecond; q.busyCalls() || q.refs.total() != 0; d = min(2*d, time.Millisecond) {
		time.Sleep(d)
	}
	q.leave()
	q.closed = true
	err := q.seg.unmap()
	q.closeEventfds()
	return err
}

// Len returns the number of messages in the queue: positions claimed by
// producers and not yet taken by consumers, less those given up (by a
// producer that met Shutdown, or recovered from a dead one). It is a
// snapshot, exact only while no call is in flight, and costs O(Len).
func (q *Queue) Len() int {
	c, err := q.begin()
	if err != nil {
		return 0
	}
	defer q.end(c)
	return q.ring.length()
}

// Cap returns the capacity of the queue in messages.
func (q *Queue) Cap() int { return int(q.ring.capacity) }

// SlotSize returns the largest message the queue holds, in bytes.
func (q *Queue) SlotSize() int { return int(q.ring.slotSize) }

// Path returns the path the handle was created or opened with.
func (q *Queue) Path() string { return q.path }

// SetRecoveryTimeout sets how long a claim of another participant may hold
// up an operation on this handle before the claimant's liveness is checked
// (see DefaultRecoveryTimeout), and again after every further timeout while
// it still holds the operation up. A claim of a dead participant is then
// taken over; a live one, however slow, is waited for.
func (q *Queue) SetRecoveryTimeout(d time.Duration) { q.recoveryTimeout.Store(int64(max(d, 0))) }

// SetSpin sets how long a blocked Enqueue or Dequeue on this handle retries
// before it goes to sleep: zero sleeps at once, a negative duration never
// sleeps (the call spins until it succeeds or ctx is done). The default is
// DefaultSpin.
func (q *Queue) SetSpin(d time.Duration) { q.spin.Store(int64(d)) }

// Stats is a snapshot of a queue's positions and counters, shared by every
// process. Counters only count rare events: nothing is counted per message.
type Stats struct {
	Capacity   int
	SlotSize   int
	Len        int
	EnqueuePos uint64 // positions claimed by producers since creation
	DequeuePos uint64 // positions taken by consumers since creation
	Shutdown   bool

	ConsumerSleeps  uint64 // times a consumer side went to sleep on the futex
	ProducerSleeps  uint64 // times a producer side went to sleep on the futex
	ConsumerWakeups uint64 // FUTEX_WAKE calls on the consumers' side (for sleepers, Shutdown, Close)
	ProducerWakeups uint64 // FUTEX_WAKE calls on the producers' side (likewise)

	RecoveredWrites       uint64 // dead producers' claims turned into skipped slots
	RecoveredReads        uint64 // dead consumers' taken slots released
	Redelivered           uint64 // of RecoveredReads, messages enqueued again (Config.Redeliver)
	SkippedSlots          uint64 // skipped slots passed over by consumers
	ParticipantsReclaimed uint64 // table entries of dead processes reused
}

// Stats returns a snapshot of the queue's counters.
func (q *Queue) Stats() Stats {
	c, err := q.begin()
	if err != nil {
		return Stats{}
	}
	defer q.end(c)
	return q.ring.stats()
}

func (r *ring) stats() Stats {
	c := func(i int) uint64 { return r.counter(i).Load() }
	return Stats{
		Capacity:              int(r.capacity),
		SlotSize:              int(r.slotSize),
		Len:                   r.length(),
		DequeuePos:            r.pos[consumers].Load() & posMask,
		EnqueuePos:            r.pos[producers].Load() & posMask,
		Shutdown:              r.shutdown.Load() != 0,
		ConsumerSleeps:        c(ctrConsumerSleeps),
		ProducerSleeps:        c(ctrProducerSleeps),
		ConsumerWakeups:       c(ctrConsumerWakes),
		ProducerWakeups:       c(ctrProducerWakes),
		RecoveredWrites:       c(ctrRecoveredWrites),
		RecoveredReads:        c(ctrRecoveredReads),
		Redelivered:           c(ctrRedelivered),
		SkippedSlots:          c(ctrSkipped),
		ParticipantsReclaimed: c(ctrParticipantsReclaimed),
	}
}
