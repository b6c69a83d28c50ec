package mpmc

// Recovery of claims left by dead participants.
//
// A claim (a slot in state writing or reading) names its owner (slot.go,
// invariant 5), and an owner is alive exactly while it holds the kernel lock
// of its participants-table entry (participants.go). A claim is taken over
// only when its owner is dead; a live owner, however slow, is waited for.
//
// Who recovers: any participant whose operation is held up by a claim. A
// consumer is held up by a head position claimed but never published; a
// producer by the slot of its next position still claimed from the previous
// lap (by a producer that never published, or a consumer that never
// released). Each side remembers the claim it is stuck on and, once the same
// claim has held it up for the recovery timeout, checks the owner's lock.
// Sleepers wake every sleepSlice to do the same, so a dead peer never strands
// them. Open sweeps the whole ring once (recoverAll).
//
// What recovery does, always by compare-and-swap on the exact control word
// that was judged dead, so that it is idempotent and safe when several
// participants attempt it at once (one CAS wins, the others fail and move
// on), and can never touch a newer claim of the same slot (sequences never
// repeat):
//
//   - (seq, writing, dead) -> (seq, skipped): the producer's Enqueue never
//     returned, so no acknowledged message is lost. Consumers pass over it.
//   - (seq, reading, dead) -> released for the next lap. The message is
//     dropped (counted in RecoveredReads) unless the queue was created with
//     Config.Redeliver: then the recoverer first takes the claim over as its
//     own, copies the message out, releases the slot and enqueues the
//     message again, marked so that it is redelivered at most once.

import (
	"sync"
	"time"
)

// DefaultRecoveryTimeout is how long a claim may hold up an operation before
// its owner's liveness is checked, unless SetRecoveryTimeout says otherwise.
// A check costs one system call, and a live owner is never taken over, so
// the timeout trades only how soon a dead peer is noticed against how often
// a slow live one is checked.
const DefaultRecoveryTimeout = 250 * time.Millisecond

// stall remembers the claim one side of a handle is held up by.
type stall struct {
	mu    sync.Mutex
	ctl   uint64    // the control word seen; 0 when none
	since time.Time // when it was first seen
}

// heldUpBy returns the claim that holds up consumers (producers if
// producers is true), if any: its position's slot and control word.
func (q *Queue) heldUpBy(producers bool) (*slot, uint64, bool) {
	if producers {
		pos := q.enqueuePos.Load()
		sl := q.seg.slot(pos)
		c := sl.ctl.Load()
		st := ctlState(c)
		return sl, c, seqDiff(c, pos) < 0 && (st == stateWriting || st == stateReading)
	}
	pos := q.dequeuePos.Load()
	sl := q.seg.slot(pos)
	c := sl.ctl.Load()
	return sl, c, seqDiff(c, pos) == 0 && ctlState(c) == stateWriting
}

// checkStall is called by a side that cannot go on. It reports whether it
// recovered a dead participant's claim, so that the caller should retry at
// once.
func (q *Queue) checkStall(producers bool) bool {
	sl, c, stuck := q.heldUpBy(producers)
	if !stuck {
		return false
	}
	st := &q.consumerStall
	if producers {
		st = &q.producerStall
	}
	now := time.Now()
	st.mu.Lock()
	if st.ctl != c {
		st.ctl, st.since = c, now
		st.mu.Unlock()
		return false
	}
	if now.Sub(st.since) < time.Duration(q.recoveryTimeout.Load()) {
		st.mu.Unlock()
		return false
	}
	st.since = now // alive owners are checked again one timeout later
	st.mu.Unlock()
	return q.recoverClaim(sl, c, nil)
}

// ownerAlive reports whether the participant named by a claim is alive.
// Liveness comes from the kernel lock of its entry; alive caches answers
// for a sweep. A claim naming no valid participant has no live owner.
func (q *Queue) ownerAlive(owner uint64, alive map[uint64]bool) bool {
	if owner == 0 || owner > maxParticipants {
		return false
	}
	if a, ok := alive[owner]; ok {
		return a
	}
	if owner == q.owner {
		return true // one of our own operations, in flight
	}
	a, err := participantAlive(q.seg.f, int(owner-1))
	if err != nil {
		a = true // cannot tell: never take over what may be alive
	}
	if alive != nil {
		alive[owner] = a
	}
	return a
}

// recoverClaim takes over the claim c of slot sl if its owner is dead, and
// reports whether it changed the slot.
func (q *Queue) recoverClaim(sl *slot, c uint64, alive map[uint64]bool) bool {
	state := ctlState(c)
	if state != stateWriting && state != stateReading {
		return false
	}
	if q.ownerAlive(ctlOwner(c), alive) {
		return false
	}
	seq := ctlSeq(c)
	// The claimant may have died before moving its side's position past
	// the claim; move it now, before the slot moves on (invariant 6).
	pos := q.dequeuePos
	if state == stateWriting {
		pos = q.enqueuePos
	}
	if p := pos.Load(); seqDiff(c, p) == 0 {
		pos.CompareAndSwap(p, p+1)
	}
	if state == stateWriting {
		if !sl.ctl.CompareAndSwap(c, packCtl(seq, stateSkipped, 0)) {
			return false // someone else recovered it, or it moved on
		}
		q.counter(ctrRecoveredWrites).Add(1)
		q.notEmpty.wake()
		return true
	}
	if !q.redeliver {
		if !sl.ctl.CompareAndSwap(c, packCtl(seq+q.seg.capacity, stateFree, 0)) {
			return false
		}
		q.counter(ctrRecoveredReads).Add(1)
		q.notFull.wake()
		return true
	}
	// Redelivery: make the claim ours first, so the message cannot change
	// while it is copied, then free the slot and enqueue the copy.
	mine := packCtl(seq, stateReading, q.owner)
	if !sl.ctl.CompareAndSwap(c, mine) {
		return false
	}
	n := min(uint64(sl.length), q.seg.slotSize)
	msg := append([]byte(nil), q.seg.payload(sl)[:n]...)
	again := sl.flags&flagRedelivered == 0 && uint64(sl.length) <= q.seg.slotSize
	sl.ctl.CompareAndSwap(mine, packCtl(seq+q.seg.capacity, stateFree, 0))
	q.counter(ctrRecoveredReads).Add(1)
	q.notFull.wake()
	if again && q.redeliverCopy(msg) {
		q.counter(ctrRedelivered).Add(1)
	}
	return true
}

// redeliverCopy enqueues a recovered message, retrying for up to one
// recovery timeout if the queue is full. It reports whether it succeeded.
func (q *Queue) redeliverCopy(msg []byte) bool {
	deadline := time.Now().Add(time.Duration(q.recoveryTimeout.Load()))
	for {
		err := q.enqueue(msg, flagRedelivered)
		if err == nil {
			return true
		}
		if err != ErrFull || time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// recoverAll sweeps every slot once and recovers the claims of dead
// participants. Open runs it, so a segment whose processes all died works
// again as soon as it is opened. Claims naming this handle's own entry are
// stale here (the handle has made none yet): they belong to the dead
// process whose entry join just took over.
func (q *Queue) recoverAll() {
	alive := map[uint64]bool{q.owner: false}
	for i := range q.seg.capacity {
		sl := q.seg.slot(i)
		q.recoverClaim(sl, sl.ctl.Load(), alive)
	}
}
