// Package harness is what `stress run` and `stress chaos` share: the life
// of a run's segment and children (Session), the facts a run's own events
// give about its verdict (Facts), the verdict itself with its typed cause
// (Verdict), and the part of the report common to both (Base).
package harness

import (
	"fmt"
	"strings"

	"github.com/shmq/mpmc/stress/internal/proc"
)

// Cause is why a verdict was reached: scripts can switch on it instead of
// parsing the verdict line.
type Cause string

// The causes of verdicts.
const (
	CauseOK          Cause = "ok"
	CauseSetup       Cause = "setup"             // the segment or the children could not be set up
	CauseChild       Cause = "child"             // a child failed, died or was not ready
	CauseTimeout     Cause = "timeout"           // the run overran -timeout
	CauseInterrupted Cause = "interrupted-twice" // a second signal killed everything
	CauseAborted     Cause = "aborted"           // the run was aborted for another reason
	CauseMismatch    Cause = "mismatch"          // a child's count disagrees with its records or log
	CauseRecords     Cause = "records"           // a records pipe or log could not be read
	CauseDelivery    Cause = "delivery"          // messages lost, duplicated, reordered, corrupt or never sent
	CauseLeftover    Cause = "leftover"          // messages left in the queue after Shutdown
	CauseStall       Cause = "stall"             // no delivery for longer than the bound
	CauseRecovery    Cause = "recovery"          // recovery counters the kills cannot explain
	CauseUsage       Cause = "usage"             // bad flags or arguments
	CauseQueue       Cause = "queue"             // the queue could not be opened or created, or returned an error
)

// Verdict is the verdict line of a command and the exit status that goes
// with it. The first verdict set wins: later ones are ignored.
type Verdict struct {
	// Line is the verdict line: "OK: ...", "FAIL: ..." or "ERROR: ...".
	Line string `json:"verdict"`
	// ExitCode is the exit status that goes with it: 0, 1 or 2.
	ExitCode int `json:"exit_code"`
	// Cause says why, for scripts.
	Cause Cause `json:"cause,omitempty"`
}

// Get returns v: every report that embeds a Verdict has it.
func (v *Verdict) Get() *Verdict { return v }

// Decided reports whether a verdict was set.
func (v *Verdict) Decided() bool { return v.Line != "" }

func (v *Verdict) set(code int, cause Cause, prefix, format string, a ...any) {
	if v.Decided() {
		return // the first cause wins
	}
	msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
	v.Line, v.ExitCode, v.Cause = prefix+msg, code, cause
}

// Error sets an ERROR verdict (exit status 2).
func (v *Verdict) Error(cause Cause, format string, a ...any) {
	v.set(proc.ExitError, cause, "ERROR: ", format, a...)
}

// Fail sets a FAIL verdict (exit status 1).
func (v *Verdict) Fail(cause Cause, format string, a ...any) {
	v.set(proc.ExitFail, cause, "FAIL: ", format, a...)
}

// OK sets the OK verdict (exit status 0).
func (v *Verdict) OK(format string, a ...any) {
	v.set(proc.ExitOK, CauseOK, "OK: ", format, a...)
}

// Adopt sets v to w, unless v was decided already.
func (v *Verdict) Adopt(w Verdict) {
	if !v.Decided() {
		*v = w
	}
}

// ChildFailed sets the verdict that a child's outcome calls for: FAIL when
// it reported a queue error, ERROR otherwise.
func (v *Verdict) ChildFailed(o proc.Outcome, msg string) {
	if o == proc.QueueError {
		v.Fail(CauseChild, "%s", msg)
	} else {
		v.Error(CauseChild, "%s", msg)
	}
}

// Facts are what a run's own events say about its verdict, before anything
// is verified: a timeout, a second signal, a child that failed, an abort.
type Facts struct {
	TimedOut bool
	// Stuck names the children still running at the timeout; Diagnosis is
	// the queue's state then.
	Stuck     []string
	Diagnosis string

	InterruptedTwice bool
	// Failed is the first child that did not end cleanly and was not
	// killed by the stress tester (it explains the others, which were).
	Failed        proc.Outcome
	FailedMessage string
	Aborted       bool
}

// Decisive reports whether the facts decide the verdict without any
// verification.
func (f Facts) Decisive() bool {
	return f.TimedOut || f.InterruptedTwice || f.FailedMessage != "" || f.Aborted
}

// Decide returns the verdict the facts call for, in order of precedence: a
// timeout (its FAIL text, timeout, worded by the command), a second signal,
// the first failed child, an abort. ok is false when they decide nothing.
func (f Facts) Decide(timeout string) (v Verdict, ok bool) {
	switch {
	case f.TimedOut:
		v.Fail(CauseTimeout, "%s", timeout)
	case f.InterruptedTwice:
		v.Error(CauseInterrupted, "interrupted twice: every child was killed, nothing verified")
	case f.FailedMessage != "":
		v.ChildFailed(f.Failed, f.FailedMessage)
	case f.Aborted:
		v.Error(CauseAborted, "run aborted")
	}
	return v, v.Decided()
}
