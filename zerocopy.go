package mpmc

import (
	"context"
	"fmt"
	"sync/atomic"
)

// maxHolds is the most Reservations and Takens one handle may hold at once:
// each holds one of the handle's pooled records (pin.go), and the rest stay
// for the calls that need one briefly.
const maxHolds = 16

// Zero-copy: a producer writes its message straight into its slot, a
// consumer reads one where it lies. A Reservation or a Taken is a claim
// (ring.go) held across the caller's own code: it is recorded like any
// claim, so if the process dies holding it, the claim is recovered like a
// single Enqueue's or Dequeue's. While one is outstanding, the consumers
// behind it (or, a lap later, the producers) wait for it, and Close of the
// handle returns ErrBusy. Hold them briefly; a handle holds at most 16 at
// once (TryReserve and TryTake return ErrBusy beyond that). Both are values: declaring one
// allocates nothing, and each method of a copy that was already finished
// returns ErrNotHeld.

// Reservation is a slot claimed for writing in place; see TryReserve.
type Reservation struct {
	q   *Queue
	c   call
	pos uint64
}

// Taken is a message taken for reading in place; see TryTake.
type Taken struct {
	q     *Queue
	c     call
	pos   uint64
	n     int
	flags uint32
}

// TryReserve claims the next slot for writing in place, without waiting:
// write up to SlotSize bytes into Bytes, then Commit (or Abort). It returns
// ErrFull, or ErrClosed after Close or Shutdown.
func (q *Queue) TryReserve() (Reservation, error) {
	return q.reserve(nil)
}

// Reserve is TryReserve, waiting while the queue is full. It returns
// ctx.Err() if ctx is done first.
func (q *Queue) Reserve(ctx context.Context) (Reservation, error) {
	return q.reserve(ctx)
}

func (q *Queue) reserve(ctx context.Context) (Reservation, error) {
	var pos uint64
	c, err := q.holdFor(ctx, producers, func(c call) (err error) {
		if q.ring.shutdown.Load() != 0 {
			return ErrClosed
		}
		pos, _, err = q.ring.claimWrite(c.rec, 1) // model: Producer zc, TRY: claimWrite(1), hpos
		return err
	})
	if err != nil {
		return Reservation{}, err
	}
	return Reservation{q: q, c: c, pos: pos}, nil
}

// holdFor starts a zero-copy hold and makes its claim with try: now, and
// then waiting (unless ctx is nil) while side s is stuck. A claim in the way
// is checked for a dead claimant, as Enqueue and Dequeue do.
func (q *Queue) holdFor(ctx context.Context, s side, try func(c call) error) (call, error) {
	c, err := q.hold()
	if err != nil {
		return call{}, err
	}
	stuck := stuckErr[s]
	once := func(look attempt) error {
		err := try(c)
		if err == stuck && look == lookForDead && q.checkStall(s, c.rec) {
			err = try(c) // a dead participant's claim was in the way
		}
		return err
	}
	err = once(lookForDead)
	if err == stuck && ctx != nil {
		err = q.wait[s].block(ctx, func(look attempt) error {
			if err := once(look); err != stuck {
				return err
			}
			return errRetry
		})
	}
	if err != nil {
		q.unhold(c)
		return call{}, err
	}
	return c, nil
}

// Bytes returns the slot's payload, SlotSize bytes, to write the message
// into. It is valid until Commit or Abort; nil if the reservation is not
// held.
func (r *Reservation) Bytes() []byte {
	if !r.held(producers) {
		return nil
	}
	return r.q.ring.payload(r.q.ring.slot(r.pos))
}

// Commit publishes the first n bytes of Bytes as the message. It returns
// ErrTooLarge (the reservation is still held) if n is out of range, and
// ErrNotHeld if the reservation was already committed or aborted.
// Commit happens before the Dequeue or Take that returns the message.
func (r *Reservation) Commit(n int) error {
	if !r.held(producers) {
		return ErrNotHeld
	}
	q := r.q
	if n < 0 || uint64(n) > q.ring.slotSize {
		return q.tooLarge(n)
	}
	sl := q.ring.slot(r.pos)
	sl.length, sl.flags, sl.origin = uint32(n), 0, r.pos
	q.finish(r.c, &sl.seq, seqWord(r.pos+1, 0), consumers) // E6; model: commitHold (Commit)
	*r = Reservation{}
	return nil
}

// Abort gives the slot up: consumers pass over it. It returns ErrNotHeld if
// the reservation was already committed or aborted.
func (r *Reservation) Abort() error {
	if !r.held(producers) {
		return ErrNotHeld
	}
	q := r.q
	q.finish(r.c, &q.ring.slot(r.pos).seq, seqWord(r.pos+1, slotSkipped), consumers) // E4; model: commitHold (ABORT)
	*r = Reservation{}
	return nil
}

func (r *Reservation) held(s side) bool {
	return r.q != nil && r.c.rec.Load() == recordFor(s, r.pos, 1)
}

// TryTake takes the next message for reading in place, without waiting: read
// it from Bytes, then Release the slot. It returns ErrEmpty, or ErrClosed
// after Close, or after Shutdown once the queue is drained.
func (q *Queue) TryTake() (Taken, error) {
	return q.take(nil)
}

// Take is TryTake, waiting while the queue is empty. It returns ctx.Err() if
// ctx is done first.
func (q *Queue) Take(ctx context.Context) (Taken, error) {
	return q.take(ctx)
}

func (q *Queue) take(ctx context.Context) (Taken, error) {
	var t Taken
	c, err := q.holdFor(ctx, consumers, func(c call) (err error) {
		shut := q.ring.shutdown.Load() != 0           // before looking: ring.go, invariant 6
		t.pos, t.n, t.flags, err = q.ring.take(c.rec) // model: ringTake
		switch {
		case err == errPending:
			err = ErrEmpty
		case err == ErrEmpty && shut:
			err = ErrClosed
		}
		return err
	})
	if err != nil {
		return Taken{}, err
	}
	t.q, t.c = q, c
	return t, nil
}

// Bytes returns the message, in place. It is valid until Release; nil if
// the message is not held.
func (t *Taken) Bytes() []byte {
	if !t.held() {
		return nil
	}
	return t.q.ring.payload(t.q.ring.slot(t.pos))[:t.n]
}

// ID returns the message's identity: the position at which it was first
// enqueued, unique for the life of the segment and kept when the message is
// redelivered (Config.Redeliver), so that a consumer that passes messages on
// (to another system, say) can tell a redelivered one from a new one.
func (t *Taken) ID() uint64 {
	if !t.held() {
		return 0
	}
	return t.q.ring.origin(t.pos)
}

// Redelivered reports whether the message is one that a consumer killed
// while taking it had taken before (see Config.Redeliver).
func (t *Taken) Redelivered() bool { return t.flags&flagRedelivered != 0 }

// Release frees the message's slot for producers. It returns ErrNotHeld if
// the message was already released. Bytes must not be used afterwards.
func (t *Taken) Release() error {
	if !t.held() {
		return ErrNotHeld
	}
	q := t.q
	q.finish(t.c, &q.ring.slot(t.pos).seq, seqWord(t.pos+q.ring.capacity, 0), producers) // D5; model: releaseHold
	*t = Taken{}
	return nil
}

func (t *Taken) held() bool {
	return t.q != nil && t.c.rec.Load() == recordFor(consumers, t.pos, 1)
}

// hold starts a zero-copy hold: an unpinned call that lasts until the hold
// ends, counted so that Close refuses while it is outstanding.
func (q *Queue) hold() (call, error) {
	n := q.held.Add(1)
	if n&heldClosing != 0 {
		q.held.Add(-1)
		return call{}, ErrClosed
	}
	if n > maxHolds {
		q.held.Add(-1)
		return call{}, fmt.Errorf("%w: %d zero-copy holds outstanding on this handle", ErrBusy, maxHolds)
	}
	c, err := q.beginClaiming()
	if err != nil {
		q.held.Add(-1)
	}
	return c, err
}

func (q *Queue) unhold(c call) {
	q.end(c)
	q.held.Add(-1)
}

// finish ends a hold with its last step, the store of word into seq, and
// wakes side s if it has sleepers: they may be waiting in short slices for
// this very claim, which can be held for long. The fence orders the store
// before the load of the asleep bit (ring.go, invariant 5).
//
// model: FINISH. c.rec.Store is an atomic Store, an XCHG on amd64, itself a
// locked instruction between the store of seq and the load below; the model
// (SC) therefore does not depend on fence() alone. MUT_FINISH_NOFENCE is the
// variant with neither barrier (the record stored with storeRelease too).
func (q *Queue) finish(c call, seq *atomic.Uint64, word uint64, s side) {
	storeRelease(seq, word) // model: FINISH W(SEQSTORE)
	c.rec.Store(recInUse)   // E7, D6; model: FINISH W(RECSTORE)
	fence()
	if q.ring.pos[s.other()].Load()&asleepBit != 0 { // model: FINISH d_step { fa = abit }
		q.ring.kick(s)
	}
	q.unhold(c)
}
