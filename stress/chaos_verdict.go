package main

// The end of a chaos run: the stalls measured on the timeline, the children
// and counts collected into the report, and the facts gathered for the
// pure judge (chaos_judge.go).

import (
	"fmt"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/proc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// stalls measures the times without deliveries while the chaos ran, from
// the timeline, and names the kill that preceded each of the longest.
func (r *chaosRunner) stalls() {
	end := time.Since(r.goTime)
	if !r.stopAt.IsZero() {
		end = r.stopAt.Sub(r.goTime)
	}
	longest, longer := r.tl.gaps(int(end/time.Millisecond), 5, r.cfg.RecoveryTimeout)
	r.rep.LongStalls = longer
	for _, g := range longest {
		st := Stall{Seconds: float64(g.length) / 1e3, FromSeconds: float64(g.from) / 1e3}
		for _, p := range r.pauses {
			if o := min(p.from+p.length, g.from+g.length) - max(p.from, g.from); o > 0 {
				st.ParentPausedSeconds += float64(o) / 1e3
			}
		}
		for i := len(r.kills) - 1; i >= 0; i-- {
			if k := r.kills[i]; k.AtSeconds <= st.FromSeconds {
				st.AfterKill = &k
				break
			}
		}
		r.rep.Stalls = append(r.rep.Stalls, st)
	}
	if len(longest) > 0 {
		r.rep.WorstStall = r.rep.Stalls[0]
	}
}

// collect records every child, the kills and the counts.
func (r *chaosRunner) collect() {
	rep := r.rep
	r.s.Collect()
	for _, c := range r.all {
		rep.RingWaits += c.waits
	}
	rep.Kills = r.kills
	for _, k := range r.kills {
		if k.Role == string(proc.Producer) {
			rep.KilledProducers++
		} else {
			rep.KilledConsumers++
		}
		if !k.Running {
			rep.KilledStarting++
		}
	}
	rep.Started = len(r.all)
	if !r.stopAt.IsZero() {
		rep.ChaosSeconds = r.since(r.stopAt)
	}
	rep.Delivered = r.delivered
	if r.lastAt > r.goNs {
		rep.LastDeliverySeconds = float64(r.lastAt-r.goNs) / 1e9
	}
	if r.tl != nil {
		r.stalls()
	}
}

// judge gathers the facts of the run and lets judgeChaos decide. A verdict
// reached while the run went on (a child that failed, a log that could not
// be read) stands.
func (r *chaosRunner) judge() {
	rep := r.rep
	if rep.Decided() {
		return
	}
	f := chaosFacts{
		Run:             r.s.Facts(),
		Redeliver:       r.cfg.Redeliver,
		KilledProducers: rep.KilledProducers,
		KilledConsumers: rep.KilledConsumers,
		WorstStall:      time.Duration(rep.WorstStall.Seconds * 1e9),
		WorstStallText:  rep.WorstStall.String(),
		StallBound:      r.bound,
		Span:            rep.span(),
		Kills:           len(r.kills),
		Delivered:       r.delivered,
	}
	if !f.Run.Decisive() {
		r.gatherVerification(&f)
	}
	rep.setJudgement(judgeChaos(f))
}

// gatherVerification adds to f what the children said against their logs,
// and, if they agree, the queue's final state and the verification.
func (r *chaosRunner) gatherVerification(f *chaosFacts) {
	rep := r.rep
	for _, c := range r.all {
		res := c.Result()
		if c.WasKilled() || res == nil {
			continue
		}
		n := c.records
		if c.Role == proc.Producer {
			n = c.acked
		}
		if n != res.Messages {
			f.Mismatch = append(f.Mismatch, fmt.Sprintf("%v reported %d messages but its log has %d", c.Child, res.Messages, n))
		}
	}
	if len(f.Mismatch) > 0 {
		return
	}
	leftover, err := drainQueue(r.s.Q)
	if err != nil {
		rep.Note("%v", err)
	}
	rep.Leftover, f.Leftover = leftover, leftover
	f.Stats = r.s.Q.Stats()
	rep.Queue = f.Stats
	if info, err := mpmc.Inspect(r.s.Path); err == nil {
		for _, p := range info.Participants {
			if !p.Alive && p.Claims > 0 {
				rep.DeadClaimsAtEnd += p.Claims
			}
		}
	}
	ps := make([]verify.Producer, len(r.producers))
	for i, c := range r.producers {
		ps[i] = verify.Producer{Sent: c.acked, Exact: true}
		if c.WasKilled() {
			ps[i].MaySend = 1
		}
	}
	res := r.ver.Finish(ps, verify.Allowance{})
	f.Verified = &res
	rep.Verified = &res
}
