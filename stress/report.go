package main

// The report of a run: measurements, verification, children, verdict; as
// text for people or as JSON for scripts.

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// Report is everything a run found. Its JSON form is what `stress run
// -json` prints: the fields of harness.Base (verdict, exit_code, cause,
// path, removed, cpu, queue, verification, children, notes) and these.
type Report struct {
	harness.Base
	Config runConfig `json:"config"`

	Messages          uint64  `json:"messages"` // messages received
	ElapsedSeconds    float64 `json:"elapsed_seconds"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	MBPerSecond       float64 `json:"mb_per_second"` // 10^6 bytes of messages per second

	Latency *Latency `json:"latency_ns,omitempty"`
	// ClockErrorNs bounds the cross-process timestamp error (see monoClock).
	ClockErrorNs int64 `json:"clock_error_ns"`
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

func newReport(cfg runConfig) *Report {
	return &Report{Base: harness.NewBase(), Config: cfg}
}

func (r *Report) setOK(n uint64) {
	r.OK("%d messages, %d producers, %d consumers, exactly-once verified", n, r.Config.Producers, r.Config.Consumers)
}

// setMeasurements fills in throughput, latency and CPU per message from the
// verification result, the merged histogram, the go time and the time the
// last message was received (both CLOCK_MONOTONIC nanoseconds).
func (r *Report) setMeasurements(res verify.Result, hist *hdrhistogram.Histogram, goNs, lastNs int64) {
	r.Verified = &res
	r.Messages = res.Received
	if lastNs > goNs {
		r.ElapsedSeconds = float64(lastNs-goNs) / 1e9
		r.MessagesPerSecond = float64(r.Messages) / r.ElapsedSeconds
		r.MBPerSecond = r.MessagesPerSecond * float64(r.Config.Size) / 1e6
	}
	if r.Messages > 0 {
		r.CPU.SecondsPerMillion = (r.CPU.UserSeconds + r.CPU.SysSeconds) / (float64(r.Messages) / 1e6)
	}
	r.Latency = newLatency(hist)
}

// newLatency summarizes a latency histogram, nil if it is empty.
func newLatency(hist *hdrhistogram.Histogram) *Latency {
	if hist.TotalCount() == 0 {
		return nil
	}
	q := hist.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return &Latency{Count: hist.TotalCount(), Mean: hist.Mean(), P50: q[0], P90: q[1], P99: q[2], P999: q[3], Max: hist.Max()}
}

// WriteJSON prints the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error { return harness.WriteJSON(w, r) }

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
	r.WriteSegment(w)
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
	r.WriteTail(w)
}

// childSummary counts children by how they ended.
func (r *Report) childSummary() string {
	clean, killed, problems := r.ChildCounts()
	s := fmt.Sprintf("%d of %d exited cleanly", clean, len(r.Children))
	if len(problems) > 0 {
		s += "; " + strings.Join(problems, "; ")
	}
	if len(killed) > 0 {
		s += "; killed by the stress tester: " + strings.Join(killed, ", ")
	}
	return s
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
