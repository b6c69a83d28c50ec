package main

// The verdict of a chaos run: which losses, duplicates, reorderings and
// stalls the kills explain, and which they do not.
//
// What a SIGKILL may cost, by where the victim was (mpmc's recovery
// semantics, see Config.Redeliver):
//
//   - a producer between claim and publish: the claim becomes a skipped slot
//     after the recovery timeout; its Enqueue never returned, so nothing
//     acknowledged is lost. A producer killed after publishing but before it
//     recorded the acknowledgement leaves one message delivered but not
//     acknowledged (verify.Producer.MaySend).
//   - a consumer inside Dequeue, holding a slot taken: recovery releases the
//     slot; the message is dropped (RecoveredReads), or with Redeliver
//     enqueued once more (Redelivered).
//   - a consumer after Dequeue returned, before it recorded the message: the
//     message is lost, and nothing in the queue can know.
//
// A consumer is at one of these points when it dies, never at two, and it
// holds at most one slot (one goroutine dequeues), so without Redeliver a
// killed consumer explains at most one lost message. With Redeliver, a
// recovered message that is not enqueued again (it had been redelivered
// once already, the queue stayed full, or the recovering process was killed
// in between) is lost too: those are RecoveredReads - Redelivered.

import (
	"fmt"
	"strings"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// chaosFacts is what a chaos run observed, as the judge needs it:
// chaosRunner.judge gathers them, judgeChaos decides.
type chaosFacts struct {
	// Run is what the run's own events say (timeout, second signal, a
	// failed child, an abort); they come before anything verified.
	Run harness.Facts
	// Mismatch lists the children whose final count disagrees with their
	// log: nothing is verified then.
	Mismatch []string

	Redeliver       bool
	KilledProducers int
	KilledConsumers int
	// Stats are the queue's counters at the end of the run.
	Stats mpmc.Stats
	// Verified is the verifier's result, judged here (its Allowance is
	// ignored); nil when the run's own events decided the verdict.
	Verified *verify.Result
	// WorstStall is the longest time without any delivery while producers
	// and consumers ran, WorstStallText the same with the kill before it;
	// StallBound the most it may be.
	WorstStall     time.Duration
	WorstStallText string
	StallBound     time.Duration
	// Leftover counts messages still in the queue after every consumer saw
	// ErrClosed.
	Leftover int

	// For the OK line: the length of the chaos as it is said, the kills
	// and the messages delivered.
	Span      string
	Kills     int
	Delivered uint64
}

// chaosProblem is one reason for a FAIL, with its cause.
type chaosProblem struct {
	Cause harness.Cause `json:"cause"`
	Text  string        `json:"text"`
}

// ChaosCheck is one bounded quantity of a chaos run: how many were seen,
// how many the kills and recoveries explain, and why.
type ChaosCheck struct {
	Seen  uint64 `json:"seen"`
	Bound uint64 `json:"bound"`
	// Why explains the bound.
	Why string `json:"why"`
}

// ChaosJudgement is the outcome of judgeChaos.
type ChaosJudgement struct {
	// Lost counts acknowledged messages never delivered ("lost to killed
	// consumers" when within bound).
	Lost       ChaosCheck `json:"lost"`
	Duplicates ChaosCheck `json:"duplicates"`
	Reordered  ChaosCheck `json:"reordered"`
	// Problems are the FAIL reasons of the verification, empty when it
	// passed.
	Problems []chaosProblem `json:"problems,omitempty"`
	// Verdict is the verdict of the run: the run's own events first, then
	// the problems (the cause of the first one), else OK.
	Verdict harness.Verdict `json:"verdict"`
}

// examples lists a violation's first offending messages; at is how a
// message is placed in a consumer's stream ("at", "again at").
func examples(v verify.Violation, at string) string {
	s := make([]string, len(v.Examples))
	for i, e := range v.Examples {
		if e.Consumer >= 0 {
			s[i] = fmt.Sprintf("%v %s consumer %d record %d", e, at, e.Consumer, e.Index)
		} else {
			s[i] = e.String()
		}
	}
	if v.Count > uint64(len(s)) {
		s = append(s, "...")
	}
	return strings.Join(s, ", ")
}

// judgeChaos decides the verdict of a chaos run from what it observed: the
// run's own events first, then whether what was verified is explained by
// the kills. It returns the verdict with the counts and bounds it judged
// by.
func judgeChaos(f chaosFacts) ChaosJudgement {
	var j ChaosJudgement
	timeout := fmt.Sprintf("%s; still running: %s; worst stall %s", f.Run.Diagnosis, strings.Join(f.Run.Stuck, ", "), f.WorstStallText)
	if v, ok := f.Run.Decide(timeout); ok {
		j.Verdict = v
		return j
	}
	switch {
	case len(f.Mismatch) > 0:
		j.Verdict.Error(harness.CauseMismatch, "%s", strings.Join(f.Mismatch, "; "))
		return j
	case f.Verified == nil:
		j.Verdict.Error(harness.CauseAborted, "nothing was verified")
		return j
	}
	j.judgeVerified(f)
	if len(j.Problems) > 0 {
		texts := make([]string, len(j.Problems))
		for i, p := range j.Problems {
			texts[i] = p.Text
		}
		j.Verdict.Fail(j.Problems[0].Cause, "%s", strings.Join(texts, "; "))
		return j
	}
	j.Verdict.OK("chaos %s, %d kills (%d producers, %d consumers), %d messages delivered, %d lost to killed consumers, worst stall %s",
		f.Span, f.Kills, f.KilledProducers, f.KilledConsumers, f.Delivered, j.Lost.Seen, ns(f.WorstStall.Nanoseconds()))
	return j
}

// judgeVerified judges the verification and the counters against what the
// kills explain, and lists the problems.
func (j *ChaosJudgement) judgeVerified(f chaosFacts) {
	v, s := *f.Verified, f.Stats
	kp, kc := uint64(f.KilledProducers), uint64(f.KilledConsumers)
	fail := func(cause harness.Cause, format string, a ...any) {
		j.Problems = append(j.Problems, chaosProblem{Cause: cause, Text: fmt.Sprintf(format, a...)})
	}

	// What recovery says it dropped. A counter that went backwards, or
	// more redeliveries than recovered reads, is itself a problem.
	dropped := uint64(0)
	if s.RecoveredReads >= s.Redelivered {
		dropped = s.RecoveredReads - s.Redelivered
	} else {
		fail(harness.CauseRecovery, "the queue counts %d redelivered messages but only %d recovered reads", s.Redelivered, s.RecoveredReads)
	}

	j.Lost = ChaosCheck{Seen: v.Lost.Count, Bound: kc, Why: fmt.Sprintf("one per killed consumer (%d)", kc)}
	if f.Redeliver {
		j.Lost.Bound += dropped
		j.Lost.Why += fmt.Sprintf(" + %d recovered but not redelivered (RecoveredReads %d - Redelivered %d)", dropped, s.RecoveredReads, s.Redelivered)
	}
	if v.Lost.Count > j.Lost.Bound {
		fail(harness.CauseDelivery, "%d acknowledged messages were never delivered, but the kills explain at most %d (%s): %s",
			v.Lost.Count, j.Lost.Bound, j.Lost.Why, examples(v.Lost, "at"))
	}
	// Each dropped message was taken by a consumer that never recorded
	// it, so it is missing; only a killed producer's message in flight
	// (not acknowledged) can be dropped without being counted lost.
	if dropped > v.Lost.Count+kp {
		fail(harness.CauseRecovery, "recovery dropped %d taken messages (RecoveredReads %d - Redelivered %d), but only %d acknowledged messages are missing and %d producers were killed: recovery released slots of messages that were delivered",
			dropped, s.RecoveredReads, s.Redelivered, v.Lost.Count, kp)
	}

	j.Duplicates = ChaosCheck{Seen: v.Duplicated.Count, Why: "redelivery is off"}
	j.Reordered = ChaosCheck{Seen: v.Reordered.Count, Why: "redelivery is off"}
	if f.Redeliver {
		j.Duplicates = ChaosCheck{Seen: v.Duplicated.Count, Bound: s.Redelivered, Why: fmt.Sprintf("messages redelivered (%d)", s.Redelivered)}
		j.Reordered = ChaosCheck{Seen: v.Reordered.Count, Bound: s.Redelivered, Why: fmt.Sprintf("messages redelivered (%d)", s.Redelivered)}
	}
	if v.Duplicated.Count > j.Duplicates.Bound {
		fail(harness.CauseDelivery, "%d messages delivered twice (bound %d: %s): %s", v.Duplicated.Count, j.Duplicates.Bound, j.Duplicates.Why,
			examples(v.Duplicated, "again at"))
	}
	if v.Reordered.Count > j.Reordered.Bound {
		ex := make([]string, len(v.Reordered.Examples))
		for i, e := range v.Reordered.Examples {
			ex[i] = fmt.Sprintf("%v after #%d at consumer %d record %d", e, e.Prev, e.Consumer, e.Index)
		}
		fail(harness.CauseDelivery, "%d messages not in their producer's order within a consumer (bound %d: %s): %s", v.Reordered.Count, j.Reordered.Bound, j.Reordered.Why,
			strings.Join(ex, ", "))
	}
	if v.Corrupt.Count > 0 {
		fail(harness.CauseDelivery, "%d corrupt messages (claiming %s)", v.Corrupt.Count, examples(v.Corrupt, "at"))
	}
	if v.Unknown.Count > 0 {
		fail(harness.CauseDelivery, "%d messages never sent, nor in flight when their producer was killed (%s)", v.Unknown.Count, examples(v.Unknown, "at"))
	}
	if f.WorstStall > f.StallBound {
		fail(harness.CauseStall, "no message was delivered for %v, more than the bound of %v (%s)", f.WorstStall.Round(time.Millisecond), f.StallBound, f.WorstStallText)
	}
	if f.Leftover > 0 {
		fail(harness.CauseLeftover, "%d messages were left in the queue after every consumer saw ErrClosed (Shutdown must drain)", f.Leftover)
	}

	// Recovery may only take over claims of processes that died: each
	// killed process leaves at most one participant entry, and holds at
	// most one claim of each kind (a producer that recovers for
	// Redeliver may hold a second one).
	readsBound, writesBound := kc, kp
	if f.Redeliver {
		readsBound, writesBound = kc+2*kp, 2*(kp+kc)
	}
	if s.RecoveredReads > readsBound {
		fail(harness.CauseRecovery, "%d reads recovered, more than the killed processes could have held (%d): a live consumer's slot was taken over", s.RecoveredReads, readsBound)
	}
	if s.RecoveredWrites > writesBound {
		fail(harness.CauseRecovery, "%d writes recovered, more than the killed processes could have held (%d): a live producer's claim was taken over", s.RecoveredWrites, writesBound)
	}
	if s.ParticipantsReclaimed > kp+kc {
		fail(harness.CauseRecovery, "%d participant entries reclaimed, but only %d processes were killed: a live participant's entry was taken over", s.ParticipantsReclaimed, kp+kc)
	}
}
