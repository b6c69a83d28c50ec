package main

// The report of a run: measurements, verification, children, verdict; as
// text for people or as JSON for scripts.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// Report is everything a run found. Its JSON form is what `stress run
// -json` prints.
type Report struct {
	// Verdict is the verdict line: "OK: ...", "FAIL: ..." or "ERROR: ...".
	Verdict string `json:"verdict"`
	// ExitCode is the exit status that goes with it: 0, 1 or 2.
	ExitCode int       `json:"exit_code"`
	Config   runConfig `json:"config"`
	Path     string    `json:"path"`
	Removed  bool      `json:"removed"` // the segment was removed at the end
	// Interrupted names the signal that stopped the run early, if any.
	Interrupted string `json:"interrupted,omitempty"`

	Messages          uint64  `json:"messages"` // messages received
	ElapsedSeconds    float64 `json:"elapsed_seconds"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	MBPerSecond       float64 `json:"mb_per_second"` // 10^6 bytes of messages per second

	Latency *Latency `json:"latency_ns,omitempty"`
	// ClockErrorNs bounds the cross-process timestamp error (see monoClock).
	ClockErrorNs int64 `json:"clock_error_ns"`

	CPU      CPU            `json:"cpu"`
	Queue    QueueCounters  `json:"queue"`
	Verified *verify.Result `json:"verification,omitempty"`
	Children []ChildReport  `json:"children"`
	Notes    []string       `json:"notes,omitempty"`
	hist     *hdrhistogram.Histogram
}

// Latency is the end-to-end latency distribution, in nanoseconds, from a
// producer's timestamp just before Enqueue to the consumer's clock reading
// just after Dequeue returned, merged over every consumer.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p99_9"`
	Max   int64   `json:"max"`
}

// CPU is the CPU time of every child process (user + system, from rusage).
type CPU struct {
	UserSeconds float64 `json:"user_seconds"`
	SysSeconds  float64 `json:"sys_seconds"`
	// SecondsPerMillion is (user + sys) per million messages received.
	SecondsPerMillion float64 `json:"seconds_per_million"`
}

// QueueCounters are the queue's shared counters at the end of the run.
type QueueCounters struct {
	EnqueuePos            uint64 `json:"enqueue_pos"`
	DequeuePos            uint64 `json:"dequeue_pos"`
	FinalLen              int    `json:"final_len"`
	ConsumerSleeps        uint64 `json:"consumer_sleeps"`
	ConsumerWakeups       uint64 `json:"consumer_wakeups"`
	ProducerSleeps        uint64 `json:"producer_sleeps"`
	ProducerWakeups       uint64 `json:"producer_wakeups"`
	RecoveredWrites       uint64 `json:"recovered_writes"`
	RecoveredReads        uint64 `json:"recovered_reads"`
	Redelivered           uint64 `json:"redelivered"`
	SkippedSlots          uint64 `json:"skipped_slots"`
	ParticipantsReclaimed uint64 `json:"participants_reclaimed"`
}

// ChildReport is how one child process ended.
type ChildReport struct {
	Role       string  `json:"role"`
	ID         int     `json:"id"`
	Pid        int     `json:"pid"`
	Exit       string  `json:"exit"` // "exit status 0", "signal: killed", ...
	ExitCode   int     `json:"exit_code"`
	Stop       string  `json:"stop,omitempty"` // why its loop ended
	Messages   uint64  `json:"messages"`
	CPUSeconds float64 `json:"cpu_seconds"`
	Stderr     string  `json:"stderr,omitempty"`
	Problem    string  `json:"problem,omitempty"`
	Killed     bool    `json:"killed,omitempty"` // the stress tester sent it SIGKILL
}

func newReport(cfg runConfig) *Report {
	return &Report{Config: cfg, Children: []ChildReport{}}
}

func (r *Report) setVerdict(code int, prefix, format string, a ...any) {
	if r.Verdict != "" {
		return // the first cause wins
	}
	msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
	r.Verdict, r.ExitCode = prefix+msg, code
}

func (r *Report) setError(format string, a ...any) { r.setVerdict(exitError, "ERROR: ", format, a...) }
func (r *Report) setFail(format string, a ...any)  { r.setVerdict(exitFail, "FAIL: ", format, a...) }

func (r *Report) setOK(n uint64) {
	r.setVerdict(exitOK, "OK: ", "%d messages, %d producers, %d consumers, exactly-once verified", n, r.Config.Producers, r.Config.Consumers)
}

func (r *Report) addChild(c *child) {
	cr := newChildReport(c)
	r.CPU.add(c)
	r.Children = append(r.Children, cr)
}

// add adds a child's CPU time.
func (cpu *CPU) add(c *child) {
	u, s := c.cpu()
	cpu.UserSeconds += u.Seconds()
	cpu.SysSeconds += s.Seconds()
}

// newChildReport says how a child ended.
func newChildReport(c *child) ChildReport {
	cr := ChildReport{Role: c.role, ID: c.id, ExitCode: -1, Stderr: strings.TrimSpace(c.stderr.String())}
	if c.cmd.Process != nil {
		cr.Pid = c.cmd.Process.Pid
	}
	if c.state != nil {
		cr.Exit, cr.ExitCode = c.state.String(), c.state.ExitCode()
	} else {
		cr.Exit = fmt.Sprint(c.waitErr)
	}
	u, s := c.cpu()
	cr.CPUSeconds = (u + s).Seconds()
	if res := c.getResult(); res != nil {
		cr.Stop, cr.Messages = res.Stop, res.Messages
	}
	_, cr.Problem = c.problem()
	cr.Killed = c.wasKilled()
	return cr
}

func newQueueCounters(s mpmc.Stats) QueueCounters {
	return QueueCounters{
		EnqueuePos:            s.EnqueuePos,
		DequeuePos:            s.DequeuePos,
		FinalLen:              s.Len,
		ConsumerSleeps:        s.ConsumerSleeps,
		ConsumerWakeups:       s.ConsumerWakeups,
		ProducerSleeps:        s.ProducerSleeps,
		ProducerWakeups:       s.ProducerWakeups,
		RecoveredWrites:       s.RecoveredWrites,
		RecoveredReads:        s.RecoveredReads,
		Redelivered:           s.Redelivered,
		SkippedSlots:          s.SkippedSlots,
		ParticipantsReclaimed: s.ParticipantsReclaimed,
	}
}

func (r *Report) setQueueStats(s mpmc.Stats) { r.Queue = newQueueCounters(s) }

// setMeasurements fills in throughput, latency and CPU per message from the
// verification result, the merged histogram, the go time and the time the
// last message was received (both CLOCK_MONOTONIC nanoseconds).
func (r *Report) setMeasurements(res verify.Result, hist *hdrhistogram.Histogram, goNs, lastNs int64) {
	r.Verified = &res
	r.Messages = res.Received
	r.hist = hist
	if lastNs > goNs {
		r.ElapsedSeconds = float64(lastNs-goNs) / 1e9
		r.MessagesPerSecond = float64(r.Messages) / r.ElapsedSeconds
		r.MBPerSecond = r.MessagesPerSecond * float64(r.Config.Size) / 1e6
	}
	if r.Messages > 0 {
		r.CPU.SecondsPerMillion = (r.CPU.UserSeconds + r.CPU.SysSeconds) / (float64(r.Messages) / 1e6)
	}
	if hist.TotalCount() > 0 {
		q := hist.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
		r.Latency = &Latency{Count: hist.TotalCount(), Mean: hist.Mean(), P50: q[0], P90: q[1], P99: q[2], P999: q[3], Max: hist.Max()}
	}
}

// WriteJSON prints the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText prints the report for people; its last line is the verdict.
func (r *Report) WriteText(w io.Writer) {
	c := r.Config
	mode := fmt.Sprintf("%d messages", c.Messages)
	switch {
	case c.Duration > 0 && c.Messages > 0:
		mode = fmt.Sprintf("%d messages or %v", c.Messages, c.Duration)
	case c.Duration > 0:
		mode = fmt.Sprintf("%v", c.Duration)
	}
	fmt.Fprintf(w, "run:        %d producers, %d consumers, %s, %d-byte messages, capacity %d, spin %v, seed %d\n",
		c.Producers, c.Consumers, mode, c.Size, c.Capacity, c.Spin, c.Seed)
	if r.Path != "" {
		state := "removed"
		if !r.Removed {
			state = "NOT removed"
		}
		fmt.Fprintf(w, "segment:    %s (%s)\n", r.Path, state)
	}
	if r.Interrupted != "" {
		fmt.Fprintf(w, "stopped:    early, by %s: the queue was shut down and drained\n", r.Interrupted)
	}
	if r.Verified != nil {
		fmt.Fprintf(w, "delivered:  %d messages in %.2f s\n", r.Messages, r.ElapsedSeconds)
		fmt.Fprintf(w, "throughput: %s msg/s, %.1f MB/s\n", thousands(uint64(r.MessagesPerSecond+0.5)), r.MBPerSecond)
		if l := r.Latency; l != nil {
			fmt.Fprintf(w, "latency:    p50 %v  p90 %v  p99 %v  p99.9 %v  max %v  (end to end, clock error < %v)\n",
				ns(l.P50), ns(l.P90), ns(l.P99), ns(l.P999), ns(l.Max), ns(r.ClockErrorNs+1))
		}
	}
	if len(r.Children) > 0 {
		if r.Verified != nil && r.Messages > 0 {
			fmt.Fprintf(w, "cpu:        %.2f s per million messages (children: user %.2f s + sys %.2f s)\n",
				r.CPU.SecondsPerMillion, r.CPU.UserSeconds, r.CPU.SysSeconds)
		} else {
			fmt.Fprintf(w, "cpu:        children: user %.2f s + sys %.2f s\n", r.CPU.UserSeconds, r.CPU.SysSeconds)
		}
		q := r.Queue
		fmt.Fprintf(w, "sleeps:     consumers slept %d times, woken by %d wake calls; producers slept %d times, woken by %d wake calls\n",
			q.ConsumerSleeps, q.ConsumerWakeups, q.ProducerSleeps, q.ProducerWakeups)
		if q.RecoveredWrites+q.RecoveredReads+q.SkippedSlots+q.ParticipantsReclaimed > 0 {
			fmt.Fprintf(w, "recovery:   %d writes and %d reads of dead processes recovered (%d redelivered), %d slots skipped, %d participants reclaimed\n",
				q.RecoveredWrites, q.RecoveredReads, q.Redelivered, q.SkippedSlots, q.ParticipantsReclaimed)
		}
		fmt.Fprintf(w, "children:   %s\n", r.childSummary())
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note:       %s\n", n)
	}
	fmt.Fprintln(w, r.Verdict)
}

// childSummary counts children by how they ended.
func (r *Report) childSummary() string {
	ok, bad, killed := 0, []string{}, []string{}
	for _, c := range r.Children {
		switch {
		case c.Problem == "":
			ok++
		case c.Killed:
			killed = append(killed, fmt.Sprintf("%s %d", c.Role, c.ID))
		default:
			bad = append(bad, c.Problem)
		}
	}
	s := fmt.Sprintf("%d of %d exited cleanly", ok, len(r.Children))
	if len(bad) > 0 {
		s += "; " + strings.Join(bad, "; ")
	}
	if len(killed) > 0 {
		s += "; killed by the stress tester: " + strings.Join(killed, ", ")
	}
	return s
}

// WriteChildStderr prints the error output of every child that wrote any,
// each line prefixed with the child's name.
func (r *Report) WriteChildStderr(w io.Writer) { writeChildStderr(w, r.Children) }

func writeChildStderr(w io.Writer, children []ChildReport) {
	for _, c := range children {
		if c.Stderr == "" {
			continue
		}
		for _, line := range strings.Split(c.Stderr, "\n") {
			fmt.Fprintf(w, "[%s %d pid %d] %s\n", c.Role, c.ID, c.Pid, line)
		}
	}
}

// ns prints nanoseconds as a duration with three significant digits.
func ns(v int64) string {
	d := time.Duration(v)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d >= time.Microsecond:
		return d.Round(100 * time.Nanosecond).String()
	}
	return d.String()
}

// thousands formats n with comma separators.
func thousands(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
