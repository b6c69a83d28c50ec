package mpmc

// Noticing dead claimants: the per-process half of recovery. The protocol
// half (who may take over which claim, and how) is in ring.go, invariant 3.
//
// A side that cannot go on because of a claim (ring.heldUpBy) remembers the
// claim; once the same claim has held it up for the recovery timeout, it
// asks the ring to recover it, which succeeds only when no live participant
// holds it; and asks again after every further timeout while the claim is
// still in the way. Sleepers held up by a claim sleep in slices of at most
// stallSliceMax (wait.go), so a dead claimant is noticed within the timeout
// plus that, whatever the sleeper was waiting for when it fell asleep.

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRecoveryTimeout is how long a claim may hold up an operation before
// its owner's liveness is checked, unless SetRecoveryTimeout says otherwise.
// A check costs a scan of the claim records and a system call per record
// that covers the claim, and a live owner is never taken over, so the
// timeout trades only how soon a dead peer is noticed against how often a
// slow live one is checked.
const DefaultRecoveryTimeout = 250 * time.Millisecond

// stall remembers the claim one side of a handle is held up by.
type stall struct {
	mu    sync.Mutex
	seen  bool      // a claim was seen (the zero claim is a real one: position 0)
	claim claim     // the claim seen
	since time.Time // when it was first seen
}

// checkStall is called by side s when it cannot go on. It reports whether
// it recovered a dead participant's claim, so that the caller should retry
// at once. rec is the caller's record.
func (q *Queue) checkStall(s side, rec *atomic.Uint64) bool {
	cl, held := q.ring.heldUpBy(s)
	if !held {
		return false
	}
	st := &q.stall[s]
	now := time.Now()
	st.mu.Lock()
	if !st.seen || st.claim != cl {
		st.seen, st.claim, st.since = true, cl, now
		st.mu.Unlock()
		return false
	}
	if now.Sub(st.since) < time.Duration(q.recoveryTimeout.Load()) {
		st.mu.Unlock()
		return false
	}
	st.since = now // a live owner is checked again one timeout later
	st.mu.Unlock()
	ok, msg := q.ring.recoverClaim(cl, rec, nil) // model: checkStall (time abstracted)
	if msg != nil {
		q.enqueueAgain(rec, msg)
	}
	return ok
}

// redeliverWait bounds how long recovery tries to enqueue a dead consumer's
// message again while the queue is full.
const redeliverWait = 10 * time.Millisecond

// enqueueAgain enqueues a recovered message again, marked so that it is not
// redelivered a second time, retrying for up to redeliverWait while the
// queue is full. A message it cannot place is dropped (counted in
// RecoveredReads but not Redelivered).
func (q *Queue) enqueueAgain(rec *atomic.Uint64, msg *redelivery) {
	deadline := time.Now().Add(redeliverWait)
	for {
		err := q.ring.enqueueAgain(rec, msg)
		if err == nil {
			q.ring.counter(ctrRedelivered).Add(1)
			return
		}
		if err != ErrFull || time.Now().After(deadline) {
			return
		}
		runtime.Gosched()
	}
}
