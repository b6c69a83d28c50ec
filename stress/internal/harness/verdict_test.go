package harness

import (
	"testing"

	"github.com/shmq/mpmc/stress/internal/proc"
)

func TestFirstVerdictWins(t *testing.T) {
	var v Verdict
	if v.Decided() {
		t.Fatal("a zero verdict is decided")
	}
	v.Fail(CauseDelivery, "2 lost\n(p0#1, p0#2)")
	v.Error(CauseSetup, "later")
	v.OK("later still")
	want := Verdict{Line: "FAIL: 2 lost (p0#1, p0#2)", ExitCode: 1, Cause: CauseDelivery}
	if v != want {
		t.Fatalf("got %+v, want %+v", v, want)
	}
	v.Adopt(Verdict{Line: "OK: x", Cause: CauseOK})
	if v != want {
		t.Fatalf("Adopt replaced a decided verdict: %+v", v)
	}
}

func TestChildFailed(t *testing.T) {
	for _, c := range []struct {
		o    proc.Outcome
		code int
		line string
	}{
		{proc.QueueError, 1, "FAIL: consumer 1 reported a queue error"},
		{proc.Failed, 2, "ERROR: consumer 1 reported a queue error"},
	} {
		var v Verdict
		v.ChildFailed(c.o, "consumer 1 reported a queue error")
		if v.ExitCode != c.code || v.Line != c.line || v.Cause != CauseChild {
			t.Errorf("%s: %+v", c.o, v)
		}
	}
}

func TestFactsPrecedence(t *testing.T) {
	all := Facts{TimedOut: true, InterruptedTwice: true, Failed: proc.Failed, FailedMessage: "child", Aborted: true}
	for _, c := range []struct {
		drop  func(*Facts)
		cause Cause
		line  string
	}{
		{func(*Facts) {}, CauseTimeout, "FAIL: timed out"},
		{func(f *Facts) { f.TimedOut = false }, CauseInterrupted, "ERROR: interrupted twice: every child was killed, nothing verified"},
		{func(f *Facts) { f.TimedOut, f.InterruptedTwice = false, false }, CauseChild, "ERROR: child"},
		{func(f *Facts) { f.TimedOut, f.InterruptedTwice, f.FailedMessage = false, false, "" }, CauseAborted, "ERROR: run aborted"},
	} {
		f := all
		c.drop(&f)
		v, ok := f.Decide("timed out")
		if !ok || !f.Decisive() || v.Cause != c.cause || v.Line != c.line {
			t.Errorf("%+v: got %+v %v, want %s %q", f, v, ok, c.cause, c.line)
		}
	}
	if v, ok := (Facts{}).Decide("x"); ok || v.Decided() || (Facts{}).Decisive() {
		t.Fatalf("empty facts decided %+v", v)
	}
}

func TestChildCounts(t *testing.T) {
	b := NewBase()
	b.Children = []ChildReport{
		{Role: proc.Consumer, ID: 0, Outcome: proc.Clean},
		{Role: proc.Producer, ID: 2, Outcome: proc.Killed, Problem: "producer 2 (pid 5) was killed by the stress tester", Killed: true},
		{Role: proc.Consumer, ID: 1, Outcome: proc.Failed, Problem: "consumer 1 (pid 6) died: signal: segmentation fault", Killed: true},
	}
	clean, killed, problems := b.ChildCounts()
	if clean != 1 || len(killed) != 1 || killed[0] != "producer 2" || len(problems) != 1 || problems[0] != b.Children[2].Problem {
		t.Fatalf("clean %d, killed %q, problems %q", clean, killed, problems)
	}
}
