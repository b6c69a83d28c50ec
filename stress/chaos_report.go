package main

// The report of a chaos run, as text for people or as JSON for scripts.

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
)

// ChaosReport is everything a chaos run found. Its JSON form is what
// `stress chaos -json` prints: the fields of harness.Base (verdict,
// exit_code, cause, path, removed, cpu, queue, verification, children,
// notes) and these.
type ChaosReport struct {
	harness.Base
	Config chaosConfig `json:"config"`

	// ChaosSeconds is the time from the go signal to the shutdown.
	ChaosSeconds float64 `json:"chaos_seconds"`
	// LastDeliverySeconds is when the last message was received, after
	// the go signal.
	LastDeliverySeconds float64 `json:"last_delivery_seconds"`
	// ParentMaxPauseSeconds is the longest time between two drains of the
	// logs by the parent (its own scheduling delays).
	ParentMaxPauseSeconds float64 `json:"parent_max_pause_seconds"`

	Started         int    `json:"started"` // child processes started in all
	Kills           []Kill `json:"kills"`
	KilledProducers int    `json:"killed_producers"`
	KilledConsumers int    `json:"killed_consumers"`
	// KilledStarting counts the kills of children that had not been told
	// to go yet.
	KilledStarting int `json:"killed_starting"`

	Delivered         uint64  `json:"delivered"`    // records of every consumer
	Acknowledged      uint64  `json:"acknowledged"` // Enqueue calls that returned nil
	MessagesPerSecond float64 `json:"messages_per_second"`
	MBPerSecond       float64 `json:"mb_per_second"`

	// Lost, Duplicates and Reordered are judged against what the kills
	// explain (see chaos_judge.go).
	Lost       ChaosCheck `json:"lost_to_killed_consumers"`
	Duplicates ChaosCheck `json:"duplicates"`
	Reordered  ChaosCheck `json:"reordered"`

	// WorstStall is the longest time without any delivery while the chaos
	// ran, by the consumers' receive times (to the millisecond); Stalls
	// are the longest few, longest first.
	WorstStall        Stall   `json:"worst_stall"`
	Stalls            []Stall `json:"stalls"`
	StallBoundSeconds float64 `json:"stall_bound_seconds"`
	// LongStalls counts the times without delivery longer than the
	// recovery timeout.
	LongStalls int `json:"long_stalls"`
	// Evidence is the queue's state captured when something went wrong:
	// a stall beyond its bound, a child that failed, a timeout.
	Evidence []Evidence `json:"evidence,omitempty"`

	// DeadClaimsAtEnd counts the claims that dead participants still held
	// at the end (never run into, so never recovered).
	DeadClaimsAtEnd int `json:"dead_claims_at_end"`
	// Leftover counts messages still queued after the consumers stopped.
	Leftover int `json:"leftover"`
	// RingWaits counts the times a consumer waited for the parent to
	// drain its log.
	RingWaits uint64 `json:"ring_waits"`
}

// Stall is one time without any delivery while the chaos ran.
type Stall struct {
	Seconds     float64 `json:"seconds"`
	FromSeconds float64 `json:"from_seconds"` // since the go signal
	// AfterKill is the last kill before the stall began, if any.
	AfterKill *Kill `json:"after_kill,omitempty"`
	// ParentPausedSeconds is how much of the stall the parent itself was
	// not scheduled (pauses of more than 20 ms between its ticks): when it
	// is most of the stall, the whole machine stalled, not the queue.
	ParentPausedSeconds float64 `json:"parent_paused_seconds"`
}

// String describes the stall, the kill before it and the parent's pauses.
func (s Stall) String() string {
	d := ns(int64(s.Seconds * 1e9))
	var after, paused string
	if s.AfterKill == nil {
		after = "before any kill"
	} else {
		after = fmt.Sprintf("%.3f s after the kill of %v", s.FromSeconds-s.AfterKill.AtSeconds, *s.AfterKill)
	}
	if s.ParentPausedSeconds > 0 {
		paused = fmt.Sprintf(" (the parent was held up for %s of it)", ns(int64(s.ParentPausedSeconds*1e9)))
	}
	return fmt.Sprintf("%s from %.3f s, %s%s", d, s.FromSeconds, after, paused)
}

// Evidence is the state of the queue at one moment.
type Evidence struct {
	When string `json:"when"`
	// Inspect is what `stress inspect` printed of the segment then.
	Inspect string `json:"inspect"`
	// RecentKills are the last kills before then.
	RecentKills []Kill `json:"recent_kills"`
}

// maxEvidence bounds how many states are captured.
const maxEvidence = 4

func newChaosReport(cfg chaosConfig) *ChaosReport {
	return &ChaosReport{Base: harness.NewBase(), Config: cfg, Kills: []Kill{}}
}

// span is the length of the chaos, as the verdict says it.
func (r *ChaosReport) span() string {
	if r.Interrupted != "" || r.ChaosSeconds < r.Config.Duration.Seconds()-0.05 {
		return fmt.Sprintf("%.1fs of %v", r.ChaosSeconds, r.Config.Duration)
	}
	return r.Config.Duration.String()
}

// setJudgement fills in the verdict, the judged counts and the throughput.
func (r *ChaosReport) setJudgement(j ChaosJudgement) {
	r.Adopt(j.Verdict)
	r.Lost, r.Duplicates, r.Reordered = j.Lost, j.Duplicates, j.Reordered
	if r.Verified != nil {
		r.Acknowledged = r.Verified.Sent
	}
	if r.LastDeliverySeconds > 0 {
		r.MessagesPerSecond = float64(r.Delivered) / r.LastDeliverySeconds
		r.MBPerSecond = r.MessagesPerSecond * float64(r.Config.Size) / 1e6
	}
}

// takeEvidence captures the state of the segment at path.
func (r *ChaosReport) takeEvidence(when, path string, kills []Kill) {
	if len(r.Evidence) >= maxEvidence {
		return
	}
	e := Evidence{When: when, RecentKills: append([]Kill(nil), kills[max(0, len(kills)-5):]...)}
	info, err := mpmc.Inspect(path)
	if err != nil {
		e.Inspect = fmt.Sprintf("inspect failed: %v", err)
	} else {
		var b strings.Builder
		writeInfo(&b, info)
		e.Inspect = b.String()
	}
	r.Evidence = append(r.Evidence, e)
}

// WriteJSON prints the report as one JSON document.
func (r *ChaosReport) WriteJSON(w io.Writer) error { return harness.WriteJSON(w, r) }

// WriteText prints the report for people; its last line is the verdict.
func (r *ChaosReport) WriteText(w io.Writer) {
	c := r.Config
	redeliver := "off"
	if c.Redeliver {
		redeliver = "on"
	}
	respawn := "at once"
	if c.RespawnDelay > 0 {
		respawn = "after " + c.RespawnDelay.String()
	}
	fmt.Fprintf(w, "chaos:      %d producers, %d consumers, %v, a kill every %v on average (+-50%%), replaced %s, %d-byte messages, capacity %d, recovery timeout %v, redelivery %s, seed %d\n",
		c.Producers, c.Consumers, c.Duration, c.KillEvery, respawn, c.Size, c.Capacity, c.RecoveryTimeout, redeliver, c.Seed)
	r.WriteSegment(w)
	if r.Interrupted != "" {
		fmt.Fprintf(w, "stopped:    early, by %s, after %.1f s: the queue was shut down and drained\n", r.Interrupted, r.ChaosSeconds)
	}
	if r.Started > 0 {
		fmt.Fprintf(w, "kills:      %d: %d producers, %d consumers (%d of them before they were running); %d processes started in all\n",
			len(r.Kills), r.KilledProducers, r.KilledConsumers, r.KilledStarting, r.Started)
	}
	if v := r.Verified; v != nil {
		fmt.Fprintf(w, "delivered:  %d messages in %.2f s (%d acknowledged by producers; %d delivered unacknowledged, in flight when their producer was killed)\n",
			r.Delivered, r.LastDeliverySeconds, r.Acknowledged, v.Unacked)
		fmt.Fprintf(w, "throughput: %s msg/s, %.1f MB/s, kills included\n", thousands(uint64(r.MessagesPerSecond+0.5)), r.MBPerSecond)
		fmt.Fprintf(w, "lost:       %d acknowledged messages lost to killed consumers (bound %d: %s)\n", r.Lost.Seen, r.Lost.Bound, r.Lost.Why)
		fmt.Fprintf(w, "duplicates: %d (bound %d: %s)\n", r.Duplicates.Seen, r.Duplicates.Bound, r.Duplicates.Why)
		fmt.Fprintf(w, "reordered:  %d (bound %d: %s)\n", r.Reordered.Seen, r.Reordered.Bound, r.Reordered.Why)
		if v.Corrupt.Count+v.Unknown.Count > 0 {
			fmt.Fprintf(w, "corrupt:    %d; never sent: %d\n", v.Corrupt.Count, v.Unknown.Count)
		}
		q := r.Queue
		fmt.Fprintf(w, "recovery:   writes %d, reads %d, redelivered %d, skipped slots %d, participants reclaimed %d; claims of dead processes left at the end %d\n",
			q.RecoveredWrites, q.RecoveredReads, q.Redelivered, q.SkippedSlots, q.ParticipantsReclaimed, r.DeadClaimsAtEnd)
	}
	if r.Started > 0 {
		why := fmt.Sprintf("recovery timeout + %v", stallMargin)
		if c.RespawnDelay > 0 {
			why = fmt.Sprintf("recovery timeout + respawn delay + %v", stallMargin)
		}
		fmt.Fprintf(w, "stalls:     worst %s; %d longer than the recovery timeout; bound %v (%s)\n",
			r.WorstStall, r.LongStalls, time.Duration(r.StallBoundSeconds*1e9), why)
		if len(r.Stalls) > 1 {
			s := make([]string, len(r.Stalls)-1)
			for i, st := range r.Stalls[1:] {
				s[i] = fmt.Sprintf("%s at %.3f s", ns(int64(st.Seconds*1e9)), st.FromSeconds)
				if st.ParentPausedSeconds > 0 {
					s[i] += fmt.Sprintf(" (parent held up %s)", ns(int64(st.ParentPausedSeconds*1e9)))
				}
			}
			fmt.Fprintf(w, "            next longest: %s; the parent paused up to %s between drains\n", strings.Join(s, ", "), ns(int64(r.ParentMaxPauseSeconds*1e9)))
		}
		fmt.Fprintf(w, "cpu:        children: user %.2f s + sys %.2f s\n", r.CPU.UserSeconds, r.CPU.SysSeconds)
		fmt.Fprintf(w, "children:   %s\n", r.childSummary())
	}
	for _, e := range r.Evidence {
		fmt.Fprintf(w, "evidence:   %s; last kills: %s\n", e.When, killList(e.RecentKills))
		for _, line := range strings.Split(strings.TrimRight(e.Inspect, "\n"), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
	r.WriteTail(w)
}

func killList(ks []Kill) string {
	if len(ks) == 0 {
		return "none"
	}
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

// childSummary counts children by how they ended.
func (r *ChaosReport) childSummary() string {
	clean, killed, problems := r.ChildCounts()
	s := fmt.Sprintf("%d started: %d killed, %d exited cleanly", len(r.Children), len(killed), clean)
	if len(problems) > 0 {
		s += "; " + strings.Join(problems, "; ")
	}
	return s
}
