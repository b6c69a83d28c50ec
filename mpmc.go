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
)

// errRetry is what a try function passed to waitSide.block returns to ask
// for another attempt later.
var errRetry = errors.New("retry")

// errPending is what dequeue returns when the head position is claimed by a
// producer that has not published yet: empty for now, but not drained.
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
}

// Queue is one process's handle on a queue segment. Its methods are safe for
// concurrent use by many goroutines. A process may hold several handles on the
// same segment; each is a participant of its own.
type Queue struct {
	seg        *segment
	path       string
	enqueuePos *atomic.Uint64
	dequeuePos *atomic.Uint64
	shutdown   *atomic.Uint32
	owner      uint64 // this handle's participant index + 1, as written into claims
	ownerIndex uint64
	notEmpty   waitSide // consumers wait here
	notFull    waitSide // producers wait here
	spin       atomic.Int64
	redeliver  bool // Config.Redeliver, from the segment header

	recoveryTimeout atomic.Int64 // time.Duration; see SetRecoveryTimeout
	consumerStall   stall        // the claim consumers are held up by
	producerStall   stall        // the claim producers are held up by

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// refs counts the calls in flight on this handle: Close unmaps once it
	// drains. The padding keeps its lines from the fields above and from
	// a neighbouring handle's.
	_    [128]byte
	refs inflight
}

// Create creates a new queue segment at path (for example a file under
// /dev/shm) with the geometry of cfg, and returns a handle on it. It fails
// with an error matching fs.ErrExist if path exists: of several processes
// creating the same path at once, exactly one succeeds. The whole segment is
// reserved up front, so a full file system fails here rather than later.
func Create(path string, cfg Config) (*Queue, error) {
	if cfg.Capacity < 0 || cfg.SlotSize < 0 {
		return nil, fmt.Errorf("%w: capacity %d, slot size %d", ErrInvalidConfig, cfg.Capacity, cfg.SlotSize)
	}
	if cfg.Perm&^os.ModePerm != 0 {
		return nil, fmt.Errorf("%w: perm %v has bits other than permissions", ErrInvalidConfig, cfg.Perm)
	}
	g, err := newGeometry(uint64(cfg.Capacity), uint64(cfg.SlotSize))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	var flags uint32
	if cfg.Redeliver {
		flags |= segmentRedeliver
	}
	seg, err := createSegment(path, g, cfg.Perm, flags)
	if err != nil {
		return nil, err
	}
	q, err := newQueue(seg, path, 0)
	if err != nil {
		seg.unmap()
		os.Remove(path)
		return nil, err
	}
	return q, nil
}

// Open joins the existing queue segment at path. The file is fully validated
// before it is mapped: a file that is not a queue, has another layout
// version, an impossible geometry or a size that does not match its header is
// refused with an error wrapping ErrBadSegment. If the segment is still being
// created by another process, Open waits for it for a short while.
func Open(path string) (*Queue, error) {
	for attempt := 1; ; attempt++ {
		seg, err := openSegment(path)
		if err != nil {
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
	q := &Queue{
		seg:        seg,
		path:       path,
		enqueuePos: seg.u64(offEnqueuePos),
		dequeuePos: seg.u64(offDequeuePos),
		shutdown:   seg.u32(offShutdown),
	}
	q.spin.Store(int64(DefaultSpin))
	q.recoveryTimeout.Store(int64(DefaultRecoveryTimeout))
	q.redeliver = seg.flags&segmentRedeliver != 0
	if err := q.join(index); err != nil {
		return nil, err
	}
	// After join: the wait sides need the participant index.
	q.notEmpty.init(q, offNotEmpty, ctrConsumerSleeps, ctrConsumerWakes, false)
	q.notFull.init(q, offNotFull, ctrProducerSleeps, ctrProducerWakes, true)
	if index < 0 {
		// Joining an existing segment: whoever held claims in it may
		// have died (all of them, on a restart).
		q.recoverAll()
	}
	return q, nil
}

func (q *Queue) counter(i int) *atomic.Uint64 {
	return q.seg.u64(offCounters + uintptr(i)*8)
}

// acquire counts a call in flight and returns the counter to release; it
// returns nil once Close has begun. Close stores closing and then reads the
// counters; acquire adds to a counter and then reads closing: both
// sequentially consistent, so either Close sees the call, or the call sees
// Close.
func (q *Queue) acquire() *atomic.Int64 {
	ref := q.refs.enter()
	if q.closing.Load() {
		ref.Add(-1)
		return nil
	}
	return ref
}

// TryEnqueue copies msg into the queue if a slot is free, without waiting.
// It returns nil, ErrFull, ErrTooLarge or ErrClosed (after Close of this
// handle or Shutdown of the queue).
func (q *Queue) TryEnqueue(msg []byte) error {
	ref := q.acquire()
	if ref == nil {
		return ErrClosed
	}
	defer ref.Add(-1)
	return q.tryEnqueue(msg, true)
}

// tryEnqueue is TryEnqueue without the reference; with stalls, a full queue
// is checked for a dead participant's claim in the way (recover.go), which
// the spinning phase of a blocking call leaves to its sleeping phase.
func (q *Queue) tryEnqueue(msg []byte, stalls bool) error {
	if uint64(len(msg)) > q.seg.slotSize {
		return fmt.Errorf("%w: %d bytes, slot size %d", ErrTooLarge, len(msg), q.seg.slotSize)
	}
	if q.shutdown.Load() != 0 {
		return ErrClosed
	}
	err := q.enqueue(msg, 0)
	if err == ErrFull && stalls && q.checkStall(true) {
		err = q.enqueue(msg, 0) // a dead participant's claim was in the way
	}
	return err
}

// TryDequeue copies the next message into buf and returns its length, without
// waiting. It returns ErrEmpty if no message is ready, io.ErrShortBuffer if
// buf is shorter than the message (which then stays queued), and ErrClosed
// after Close of this handle, or after Shutdown once the queue is drained.
func (q *Queue) TryDequeue(buf []byte) (int, error) {
	ref := q.acquire()
	if ref == nil {
		return 0, ErrClosed
	}
	defer ref.Add(-1)
	return q.tryDequeue(buf, true)
}

// tryDequeue is TryDequeue without the reference; stalls as for tryEnqueue.
func (q *Queue) tryDequeue(buf []byte, stalls bool) (int, error) {
	// Read the flag before looking: a message published before Shutdown
	// is then certain to be seen.
	shut := q.shutdown.Load() != 0
	n, err := q.dequeue(buf)
	if err == errPending && stalls && q.checkStall(false) {
		n, err = q.dequeue(buf) // a dead producer's claim was in the way
	}
	switch {
	case err == errPending:
		err = ErrEmpty
	case err == ErrEmpty && shut:
		err = ErrClosed
	}
	return n, err
}

// Enqueue copies msg into the queue, waiting while it is full. It returns
// ctx.Err() if ctx is done first, and otherwise what TryEnqueue returns other
// than ErrFull.
func (q *Queue) Enqueue(ctx context.Context, msg []byte) error {
	ref := q.acquire()
	if ref == nil {
		return ErrClosed
	}
	defer ref.Add(-1)
	if err := q.tryEnqueue(msg, false); err != ErrFull {
		return err
	}
	return q.notFull.block(ctx, func(stalls bool) error {
		err := q.tryEnqueue(msg, stalls)
		if err == ErrFull {
			return errRetry
		}
		return err
	})
}

// Dequeue copies the next message into buf and returns its length, waiting
// while the queue is empty. It returns ctx.Err() if ctx is done first, and
// otherwise what TryDequeue returns other than ErrEmpty.
func (q *Queue) Dequeue(ctx context.Context, buf []byte) (int, error) {
	ref := q.acquire()
	if ref == nil {
		return 0, ErrClosed
	}
	defer ref.Add(-1)
	n, err := q.tryDequeue(buf, false)
	if err != ErrEmpty {
		return n, err
	}
	err = q.notEmpty.block(ctx, func(stalls bool) error {
		n, err = q.tryDequeue(buf, stalls)
		if err == ErrEmpty {
			return errRetry
		}
		return err
	})
	return n, err
}

// Shutdown closes the queue for every process: enqueues fail with ErrClosed
// from then on, dequeues drain the messages left and then fail with
// ErrClosed, and every sleeping Enqueue and Dequeue, in every process, wakes.
// An Enqueue that runs concurrently with Shutdown either fails with ErrClosed
// or succeeds; every message whose Enqueue succeeded, before or during
// Shutdown, is delivered before consumers see ErrClosed.
// Shutdown is idempotent; it does not release this handle (see Close).
func (q *Queue) Shutdown() error {
	ref := q.acquire()
	if ref == nil {
		return ErrClosed
	}
	defer ref.Add(-1)
	q.shutdown.Store(1)
	q.notEmpty.kick()
	q.notFull.kick()
	return nil
}

// Close releases this handle: it leaves the participants table and unmaps
// the segment once no call on the handle is in flight. Goroutines of this
// process blocked on the handle return ErrClosed. Close does not affect other
// handles or processes, and does not remove the segment file. Calls after
// Close return ErrClosed, including Close itself.
func (q *Queue) Close() error {
	err := ErrClosed
	q.closeOnce.Do(func() {
		q.closing.Store(true)
		// Wake our own sleepers, if any (a futex wake reaches every
		// process's sleepers; theirs wake spuriously and re-check).
		q.notEmpty.kickIfSleeping()
		q.notFull.kickIfSleeping()
		for d := time.Microsecond; q.refs.total() != 0; d = min(2*d, time.Millisecond) {
			time.Sleep(d)
		}
		q.leave()
		q.closeErr = q.seg.unmap()
		err = q.closeErr
	})
	return err
}

// Len returns the number of messages in the queue: positions claimed by
// producers and not yet taken by consumers, less those given up (by a
// producer that met Shutdown, or recovered from a dead one). It is a
// snapshot, exact only while no call is in flight, and costs O(Len).
func (q *Queue) Len() int {
	ref := q.acquire()
	if ref == nil {
		return 0
	}
	defer ref.Add(-1)
	d := q.dequeuePos.Load()
	e := q.enqueuePos.Load()
	n := max(0, min(int64(e-d), int64(q.seg.capacity)))
	for pos, end := d, d+uint64(n); pos != end; pos++ {
		if c := q.seg.slot(pos).ctl.Load(); seqDiff(c, pos) == 0 && ctlState(c) == stateSkipped {
			n--
		}
	}
	return int(n)
}

// Cap returns the capacity of the queue in messages.
func (q *Queue) Cap() int { return int(q.seg.capacity) }

// SlotSize returns the largest message the queue holds, in bytes.
func (q *Queue) SlotSize() int { return int(q.seg.slotSize) }

// Path returns the path the handle was created or opened with.
func (q *Queue) Path() string { return q.path }

// SetRecoveryTimeout sets how long a claim of another participant may hold
// up an operation on this handle before the claimant's liveness is checked
// (see DefaultRecoveryTimeout). A claim of a dead participant is then taken
// over; a live one, however slow, is waited for.
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
	ref := q.acquire()
	if ref == nil {
		return Stats{}
	}
	defer ref.Add(-1)
	c := func(i int) uint64 { return q.counter(i).Load() }
	return Stats{
		Capacity:              q.Cap(),
		SlotSize:              q.SlotSize(),
		Len:                   q.Len(),
		DequeuePos:            q.dequeuePos.Load(),
		EnqueuePos:            q.enqueuePos.Load(),
		Shutdown:              q.shutdown.Load() != 0,
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

// hookPoint names a step of an operation at which tests may stop a process.
type hookPoint int

const (
	hookEnqueueClaimed       hookPoint = iota // slot claimed, nothing written
	hookEnqueueMidCopy                        // half the payload written
	hookEnqueueBeforePublish                  // payload and length written
	hookDequeueTaken                          // slot taken, nothing copied
	hookDequeueCopied                         // copied out, slot not released
	hookJoinLocked                            // participant lock held, entry not written
	hookCreateBeforeReady                     // segment sized, header not published
)

// testHook, when set (by tests only), is called at each hookPoint.
var testHook atomic.Pointer[func(hookPoint)]

func hook(p hookPoint) {
	if h := testHook.Load(); h != nil {
		(*h)(p)
	}
}
