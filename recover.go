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
//     message again, marked so that it is redelivered at most once. If the
//     queue stays full for redeliverWait, or the recoverer dies too, the
//     message is dropped after all.
//   - (seq, skipped) behind the consumers' head -> released for the next
//     lap: a consumer died while passing it over.

import (
	"runtime"
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
		return sl, c, seqDiff(c, pos) < 0 && (st == stateWriting || st == stateReading || st == stateSkipped)
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
	ok, msg := q.recoverClaim(sl, c, nil)
	if msg != nil {
		q.enqueueAgain(msg)
	}
	return ok
}

// ownerAlive reports whether the participant named by a claim is alive.
// Liveness comes from the kernel lock of its entry. alive caches answers for
// a sweep, but only "alive": a dead participant's entry may be taken by a new
// one at any moment, whose claims must not be judged by the old answer.
// (Judging a claim loaded before the check is safe: a new holder's claims
// are different words.) A claim naming no valid participant has no live
// owner.
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
	if alive != nil && a {
		alive[owner] = true
	}
	return a
}

// recoverClaim takes over the claim c of slot sl if its owner is dead, or
// passes over a skipped slot left behind the consumers' head (by a consumer
// that died half-way through passing it). It reports whether it changed the
// slot and, under Config.Redeliver, returns the message of a dead consumer to
// be enqueued again (see enqueueAgain), nil otherwise.
func (q *Queue) recoverClaim(sl *slot, c uint64, alive map[uint64]bool) (bool, []byte) {
	state := ctlState(c)
	seq := ctlSeq(c)
	if state == stateSkipped {
		// Consumers pass (p, skipped) by moving the head first, then the
		// slot; one that died in between leaves it behind the head,
		// where only producers a lap later meet it.
		if seqDiff(c, q.dequeuePos.Load()) >= 0 {
			return false, nil // at or ahead of the head: consumers will pass it
		}
		if !sl.ctl.CompareAndSwap(c, packCtl(seq+q.seg.capacity, stateFree, 0)) {
			return false, nil
		}
		q.counter(ctrSkipped).Add(1)
		q.notFull.wake()
		return true, nil
	}
	if state != stateWriting && state != stateReading {
		return false, nil
	}
	if q.ownerAlive(ctlOwner(c), alive) {
		return false, nil
	}
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
			return false, nil // someone else recovered it, or it moved on
		}
		q.counter(ctrRecoveredWrites).Add(1)
		q.notEmpty.wake()
		return true, nil
	}
	if !q.redeliver {
		if !sl.ctl.CompareAndSwap(c, packCtl(seq+q.seg.capacity, stateFree, 0)) {
			return false, nil
		}
		q.counter(ctrRecoveredReads).Add(1)
		q.notFull.wake()
		return true, nil
	}
	// Redelivery: make the claim ours first, so the message cannot change
	// while it is copied, then free the slot. The caller enqueues the copy.
	mine := packCtl(seq, stateReading, q.owner)
	if !sl.ctl.CompareAndSwap(c, mine) {
		return false, nil
	}
	var msg []byte
	if n := uint64(sl.length); n <= q.seg.slotSize && sl.flags&flagRedelivered == 0 {
		msg = append(make([]byte, 0, n), q.seg.payload(sl)[:n]...)
	}
	sl.ctl.CompareAndSwap(mine, packCtl(seq+q.seg.capacity, stateFree, 0))
	q.counter(ctrRecoveredReads).Add(1)
	q.notFull.wake()
	return true, msg
}

// redeliverWait bounds how long recovery tries to enqueue a dead consumer's
// message again while the queue is full.
const redeliverWait = 10 * time.Millisecond

// enqueueAgain enqueues a recovered message again, marked so that it is not
// redelivered a second time, retrying for up to redeliverWait while the
// queue is full. A message it cannot place is dropped (counted in
// RecoveredReads but not Redelivered).
func (q *Queue) enqueueAgain(msg []byte) {
	deadline := time.Now().Add(redeliverWait)
	for {
		err := q.enqueue(msg, flagRedelivered)
		if err == nil {
			q.counter(ctrRedelivered).Add(1)
			return
		}
		if err != ErrFull || time.Now().After(deadline) {
			return
		}
		runtime.Gosched()
	}
}

// recoverAll sweeps every slot once and recovers the claims of dead
// participants. Open runs it, so a segment whose processes all died works
// again as soon as it is opened. Claims naming this handle's own entry are
// stale here (the handle has made none yet): they belong to the dead
// process whose entry join just took over. Messages to redeliver are
// enqueued after the sweep, when every slot it freed is free.
func (q *Queue) recoverAll() {
	alive := map[uint64]bool{q.owner: false}
	var again [][]byte
	for i := range q.seg.capacity {
		sl := q.seg.slot(i)
		if _, msg := q.recoverClaim(sl, sl.ctl.Load(), alive); msg != nil {
			again = append(again, msg)
		}
	}
	for _, msg := range again {
		q.enqueueAgain(msg)
	}
}
