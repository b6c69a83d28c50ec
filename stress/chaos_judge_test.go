package main

import (
	"strings"
	"testing"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/proc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// feed verifies the records of each consumer against producers that
// acknowledged acked[i] messages; killed[i] marks producers that were killed
// (one message may have been in flight).
func feed(acked []uint64, killed []bool, consumers ...[]verify.Record) verify.Result {
	v := verify.New(1)
	v.Grow(len(acked))
	for id, recs := range consumers {
		v.Consumer(id).ObserveBatch(recs)
	}
	ps := make([]verify.Producer, len(acked))
	for i, n := range acked {
		ps[i] = verify.Producer{Sent: n, Exact: true}
		if killed[i] {
			ps[i].MaySend = 1
		}
	}
	return v.Finish(ps, verify.Allowance{})
}

// seqs returns the records of producer p, sequence numbers from..to-1.
func seqs(p uint32, from, to uint64) []verify.Record {
	var rs []verify.Record
	for s := from; s < to; s++ {
		rs = append(rs, verify.Record{Producer: p, Seq: s})
	}
	return rs
}

func cat(parts ...[]verify.Record) []verify.Record {
	var rs []verify.Record
	for _, p := range parts {
		rs = append(rs, p...)
	}
	return rs
}

// facts is a run with no kills, no stall and the given verification.
func facts(res verify.Result) chaosFacts {
	return chaosFacts{Verified: &res, WorstStall: 100 * time.Millisecond, WorstStallText: "100ms from 1.000 s, before any kill", StallBound: 2250 * time.Millisecond, Span: "5s"}
}

func wantOK(t *testing.T, f chaosFacts) ChaosJudgement {
	t.Helper()
	j := judgeChaos(f)
	if len(j.Problems) > 0 || j.Verdict.ExitCode != 0 || j.Verdict.Cause != harness.CauseOK || !strings.HasPrefix(j.Verdict.Line, "OK: chaos 5s, ") {
		t.Fatalf("want OK, got problems: %+v, verdict %+v", j.Problems, j.Verdict)
	}
	return j
}

// wantFail judges f and wants a FAIL verdict naming a problem of cause
// that contains substr.
func wantFail(t *testing.T, f chaosFacts, cause harness.Cause, substr string) {
	t.Helper()
	j := judgeChaos(f)
	if j.Verdict.ExitCode != 1 || !strings.HasPrefix(j.Verdict.Line, "FAIL: ") || j.Verdict.Cause != j.Problems[0].Cause {
		t.Fatalf("want a FAIL verdict of the first problem's cause, got %+v", j.Verdict)
	}
	for _, p := range j.Problems {
		if strings.Contains(p.Text, substr) && p.Cause == cause && strings.Contains(j.Verdict.Line, p.Text) {
			return
		}
	}
	t.Fatalf("want a problem of cause %q containing %q, got %+v", cause, substr, j.Problems)
}

func TestChaosCleanRunPasses(t *testing.T) {
	res := feed([]uint64{100, 50}, []bool{false, false}, cat(seqs(0, 0, 60), seqs(1, 0, 50)), seqs(0, 60, 100))
	wantOK(t, facts(res))
}

func TestChaosLostNotExplainedFails(t *testing.T) {
	// p0#40 was acknowledged and never delivered, and no consumer was
	// killed (a producer was, which explains no loss).
	res := feed([]uint64{100}, []bool{true}, cat(seqs(0, 0, 40), seqs(0, 41, 100)))
	f := facts(res)
	f.KilledProducers = 1
	wantFail(t, f, harness.CauseDelivery, "1 acknowledged messages were never delivered, but the kills explain at most 0")

	// Two losses, one killed consumer: one too many.
	res = feed([]uint64{100}, []bool{false}, cat(seqs(0, 0, 40), seqs(0, 41, 70)), seqs(0, 71, 100))
	f = facts(res)
	f.KilledConsumers = 1
	f.Stats.RecoveredReads = 1
	wantFail(t, f, harness.CauseDelivery, "2 acknowledged messages were never delivered, but the kills explain at most 1")
}

func TestChaosLostExplainedPasses(t *testing.T) {
	// Two killed consumers: one held p0#40 taken (dropped by recovery),
	// the other had dequeued p0#70 and not recorded it.
	res := feed([]uint64{100}, []bool{false}, seqs(0, 0, 40), seqs(0, 41, 70), seqs(0, 71, 100))
	f := facts(res)
	f.KilledConsumers = 2
	f.Stats.RecoveredReads = 1
	j := wantOK(t, f)
	if j.Lost.Seen != 2 || j.Lost.Bound != 2 {
		t.Fatalf("lost %+v", j.Lost)
	}
	// With Redeliver, a recovered message that was not enqueued again
	// (it had been redelivered before) widens the bound by one.
	res = feed([]uint64{100}, []bool{false}, seqs(0, 0, 40), seqs(0, 41, 70), seqs(0, 71, 99))
	f = facts(res)
	f.Redeliver, f.KilledConsumers = true, 2
	f.Stats.RecoveredReads, f.Stats.Redelivered = 2, 1
	if j := wantOK(t, f); j.Lost.Bound != 3 {
		t.Fatalf("lost %+v", j.Lost)
	}
}

func TestChaosDroppedButDeliveredFails(t *testing.T) {
	// Recovery says it released a taken slot, yet nothing is missing: it
	// took over the slot of a consumer that lived on.
	res := feed([]uint64{100}, []bool{false}, seqs(0, 0, 100))
	f := facts(res)
	f.KilledConsumers = 1
	f.Stats.RecoveredReads = 1
	wantFail(t, f, harness.CauseRecovery, "recovery released slots of messages that were delivered")
}

func TestChaosDuplicateWithoutRedeliveryFails(t *testing.T) {
	res := feed([]uint64{100}, []bool{false}, seqs(0, 0, 60), cat(seqs(0, 59, 100)))
	f := facts(res)
	f.KilledConsumers = 3
	wantFail(t, f, harness.CauseDelivery, "1 messages delivered twice (bound 0: redelivery is off): p0#59 again at consumer 1")
}

func TestChaosRedeliveredDuplicateAndReorderPasses(t *testing.T) {
	// Consumer 0 recorded p0#30; the message was redelivered to consumer
	// 1 after later ones: a duplicate and a reordering, one redelivery.
	res := feed([]uint64{100}, []bool{false}, seqs(0, 0, 31), cat(seqs(0, 31, 60), seqs(0, 30, 31), seqs(0, 60, 100)))
	f := facts(res)
	f.Redeliver, f.KilledConsumers = true, 1
	f.Stats.RecoveredReads, f.Stats.Redelivered = 1, 1
	j := wantOK(t, f)
	if j.Duplicates.Seen != 1 || j.Duplicates.Bound != 1 || j.Reordered.Seen != 1 {
		t.Fatalf("judgement %+v", j)
	}
	// The same without redelivery fails twice over.
	f.Redeliver = false
	f.Stats.Redelivered = 0
	wantFail(t, f, harness.CauseDelivery, "delivered twice")
	wantFail(t, f, harness.CauseDelivery, "not in their producer's order")
	// And with redelivery, more duplicates than redeliveries fail.
	res = feed([]uint64{100}, []bool{false}, seqs(0, 0, 32), cat(seqs(0, 32, 60), seqs(0, 30, 32), seqs(0, 60, 100)))
	f = facts(res)
	f.Redeliver, f.KilledConsumers = true, 1
	f.Stats.RecoveredReads, f.Stats.Redelivered = 1, 1
	wantFail(t, f, harness.CauseDelivery, "2 messages delivered twice (bound 1")
}

func TestChaosStallFails(t *testing.T) {
	res := feed([]uint64{10}, []bool{false}, seqs(0, 0, 10))
	f := facts(res)
	f.WorstStall = 2251 * time.Millisecond
	wantFail(t, f, harness.CauseStall, "no message was delivered for 2.251s, more than the bound of 2.25s")
	f.WorstStall = f.StallBound
	wantOK(t, f)
}

func TestChaosKilledProducerInFlight(t *testing.T) {
	// A killed producer acknowledged 50; #50 was in flight and was
	// delivered: fine. #51 was never sent: FAIL.
	res := feed([]uint64{50}, []bool{true}, seqs(0, 0, 51))
	f := facts(res)
	f.KilledProducers = 1
	f.Stats.RecoveredWrites = 1
	wantOK(t, f)
	res = feed([]uint64{50}, []bool{true}, seqs(0, 0, 52))
	f.Verified = &res
	wantFail(t, f, harness.CauseDelivery, "1 messages never sent, nor in flight when their producer was killed (p0#51)")
}

func TestChaosImpossibleCounters(t *testing.T) {
	res := feed([]uint64{10}, []bool{false}, seqs(0, 0, 10))
	for _, c := range []struct {
		stats mpmc.Stats
		want  string
	}{
		{mpmc.Stats{RecoveredWrites: 1}, "a live producer's claim was taken over"},
		{mpmc.Stats{ParticipantsReclaimed: 1}, "a live participant's entry was taken over"},
		{mpmc.Stats{RecoveredReads: 1, Redelivered: 1}, "a live consumer's slot was taken over"},
		{mpmc.Stats{Redelivered: 1}, "redelivered messages but only 0 recovered reads"},
	} {
		f := facts(res)
		f.Stats = c.stats
		wantFail(t, f, harness.CauseRecovery, c.want)
	}
	f := facts(res)
	f.Leftover = 2
	wantFail(t, f, harness.CauseLeftover, "2 messages were left in the queue")
	f = facts(feed([]uint64{10}, []bool{false}, cat(seqs(0, 0, 5), []verify.Record{{Producer: 0, Seq: 5, Corrupt: true}}, seqs(0, 6, 10))))
	f.KilledConsumers = 1
	wantFail(t, f, harness.CauseDelivery, "1 corrupt messages")
}

func TestChaosStallNamesTheWorstStall(t *testing.T) {
	f := facts(feed([]uint64{10}, []bool{false}, seqs(0, 0, 10)))
	f.WorstStall, f.WorstStallText = 3*time.Second, "3s from 2.000 s, 0.010 s after the kill of consumer 1 (pid 7) at 1.990 s"
	j := judgeChaos(f)
	want := "FAIL: no message was delivered for 3s, more than the bound of 2.25s (3s from 2.000 s, 0.010 s after the kill of consumer 1 (pid 7) at 1.990 s)"
	if j.Verdict.Line != want || j.Verdict.Cause != harness.CauseStall {
		t.Fatalf("verdict %+v\nwant %q", j.Verdict, want)
	}
}

func TestChaosOKLine(t *testing.T) {
	f := facts(feed([]uint64{100}, []bool{false}, seqs(0, 0, 40), seqs(0, 41, 100)))
	f.KilledProducers, f.KilledConsumers, f.Kills, f.Delivered = 2, 1, 3, 99
	f.Stats.RecoveredReads = 1
	j := judgeChaos(f)
	want := "OK: chaos 5s, 3 kills (2 producers, 1 consumers), 99 messages delivered, 1 lost to killed consumers, worst stall 100ms"
	if j.Verdict.Line != want {
		t.Fatalf("verdict %q, want %q", j.Verdict.Line, want)
	}
}

// TestChaosRunEventsComeFirst: the run's own events decide before any
// verification, in their order of precedence, with their causes.
func TestChaosRunEventsComeFirst(t *testing.T) {
	bad := facts(feed([]uint64{100}, []bool{false}, seqs(0, 0, 10))) // 90 lost
	for _, c := range []struct {
		name  string
		run   harness.Facts
		mis   []string
		code  int
		cause harness.Cause
		line  string
	}{
		{"timeout", harness.Facts{TimedOut: true, Stuck: []string{"consumer 0 (pid 9)"}, Diagnosis: "the run did not finish within -timeout 1s: queue len 0", Aborted: true, FailedMessage: "x"},
			nil, 1, harness.CauseTimeout, "FAIL: the run did not finish within -timeout 1s: queue len 0; still running: consumer 0 (pid 9); worst stall 100ms from 1.000 s, before any kill"},
		{"interrupted twice", harness.Facts{InterruptedTwice: true, Aborted: true},
			nil, 2, harness.CauseInterrupted, "ERROR: interrupted twice: every child was killed, nothing verified"},
		{"queue error", harness.Facts{Failed: proc.QueueError, FailedMessage: "consumer 1 (pid 3) reported a queue error (exit status 1)", Aborted: true},
			nil, 1, harness.CauseChild, "FAIL: consumer 1 (pid 3) reported a queue error (exit status 1)"},
		{"child died", harness.Facts{Failed: proc.Failed, FailedMessage: "producer 0 (pid 4) failed with exit status 3", Aborted: true},
			nil, 2, harness.CauseChild, "ERROR: producer 0 (pid 4) failed with exit status 3"},
		{"aborted", harness.Facts{Aborted: true}, nil, 2, harness.CauseAborted, "ERROR: run aborted"},
		{"mismatch", harness.Facts{}, []string{"a", "b"}, 2, harness.CauseMismatch, "ERROR: a; b"},
	} {
		f := bad
		f.Run, f.Mismatch = c.run, c.mis
		j := judgeChaos(f)
		if j.Verdict.Line != c.line || j.Verdict.ExitCode != c.code || j.Verdict.Cause != c.cause || len(j.Problems) != 0 {
			t.Errorf("%s: verdict %+v, problems %+v\nwant %q exit %d cause %s", c.name, j.Verdict, j.Problems, c.line, c.code, c.cause)
		}
	}
}
