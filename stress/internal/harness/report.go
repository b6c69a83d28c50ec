package harness

// The part of the report that `stress run` and `stress chaos` share.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/proc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// Base is the part of a run's report common to every command that starts
// children. Its fields appear at the top level of the report's JSON.
type Base struct {
	Verdict
	Path    string `json:"path"`
	Removed bool   `json:"removed"` // the segment was removed at the end
	// Interrupted names the signal that stopped the run early, if any.
	Interrupted string `json:"interrupted,omitempty"`

	CPU CPU `json:"cpu"`
	// Queue are the queue's counters at the end of the run.
	Queue    mpmc.Stats     `json:"queue"`
	Verified *verify.Result `json:"verification,omitempty"`
	Children []ChildReport  `json:"children"`
	Notes    []string       `json:"notes,omitempty"`
}

// NewBase returns an empty report.
func NewBase() Base { return Base{Children: []ChildReport{}} }

// CPU is the CPU time of every child process (user + system, from rusage).
type CPU struct {
	UserSeconds float64 `json:"user_seconds"`
	SysSeconds  float64 `json:"sys_seconds"`
	// SecondsPerMillion is (user + sys) per million messages received.
	SecondsPerMillion float64 `json:"seconds_per_million"`
}

// ChildReport is how one child process ended.
type ChildReport struct {
	Role       proc.Role    `json:"role"`
	ID         int          `json:"id"`
	Pid        int          `json:"pid"`
	Exit       string       `json:"exit"` // "exit status 0", "signal: killed", ...
	ExitCode   int          `json:"exit_code"`
	Outcome    proc.Outcome `json:"outcome"`
	Stop       string       `json:"stop,omitempty"` // why its loop ended
	Messages   uint64       `json:"messages"`
	CPUSeconds float64      `json:"cpu_seconds"`
	Stderr     string       `json:"stderr,omitempty"`
	Problem    string       `json:"problem,omitempty"`
	Killed     bool         `json:"killed,omitempty"` // the stress tester sent it SIGKILL
}

// AddChild records how a child ended and adds its CPU time.
func (b *Base) AddChild(c *proc.Child) {
	cr := ChildReport{Role: c.Role, ID: c.ID, Pid: c.Pid(), Stderr: c.Stderr(), Killed: c.WasKilled()}
	cr.Exit, cr.ExitCode = c.Exit()
	u, s := c.CPU()
	cr.CPUSeconds = (u + s).Seconds()
	b.CPU.UserSeconds += u.Seconds()
	b.CPU.SysSeconds += s.Seconds()
	if res := c.Result(); res != nil {
		cr.Stop, cr.Messages = res.Stop, res.Messages
	}
	cr.Outcome, cr.Problem = c.Problem()
	b.Children = append(b.Children, cr)
}

// Note adds a note to the report.
func (b *Base) Note(format string, a ...any) { b.Notes = append(b.Notes, fmt.Sprintf(format, a...)) }

// ChildCounts counts the children by outcome: those that exited cleanly,
// the names of those the stress tester killed, and the problems of the
// others.
func (b *Base) ChildCounts() (clean int, killed, problems []string) {
	for _, c := range b.Children {
		switch c.Outcome {
		case proc.Clean:
			clean++
		case proc.Killed:
			killed = append(killed, fmt.Sprintf("%s %d", c.Role, c.ID))
		default:
			problems = append(problems, c.Problem)
		}
	}
	return clean, killed, problems
}

// WriteSegment prints the segment line, if a segment was made.
func (b *Base) WriteSegment(w io.Writer) {
	if b.Path == "" {
		return
	}
	state := "removed"
	if !b.Removed {
		state = "NOT removed"
	}
	fmt.Fprintf(w, "segment:    %s (%s)\n", b.Path, state)
}

// WriteTail prints the notes and the verdict line, the last lines of every
// report.
func (b *Base) WriteTail(w io.Writer) {
	for _, n := range b.Notes {
		fmt.Fprintf(w, "note:       %s\n", n)
	}
	fmt.Fprintln(w, b.Line)
}

// WriteChildStderr prints the error output of every child that wrote any,
// each line prefixed with the child's name.
func (b *Base) WriteChildStderr(w io.Writer) {
	for _, c := range b.Children {
		if c.Stderr == "" {
			continue
		}
		for _, line := range strings.Split(c.Stderr, "\n") {
			fmt.Fprintf(w, "[%s %d pid %d] %s\n", c.Role, c.ID, c.Pid, line)
		}
	}
}

// WriteJSON prints v (a report) as one indented JSON document.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
