package main

// The targets: the goals of the queue, each evaluated on the ratios and
// medians of one run. Ratios compare two mechanisms measured in the same
// repetition.

import (
	"fmt"
	"math"
)

// goal is a bound on a value: at most or at least limit.
type goal struct {
	atMost bool
	limit  float64
}

func atMost(limit float64) goal  { return goal{true, limit} }
func atLeast(limit float64) goal { return goal{false, limit} }

// target evaluates v against g; a NaN v was not measured.
func target(name string, v float64, g goal, unit string) Target {
	t := Target{Name: name, Limit: g.limit, AtMost: g.atMost, Unit: unit, Measured: !math.IsNaN(v)}
	t.Met = t.Measured && (g.atMost && v <= g.limit || !g.atMost && v >= g.limit)
	t.Value = fin(v)
	return t
}

// evalTargets evaluates every target on res (whose rows and ratios are
// filled), then lists the pending ones.
func evalTargets(res *Results) []Target {
	r := res.ratioOf
	ts := []Target{
		target("pair on one goroutine (TryEnqueue+TryDequeue, 64 B): mpmc vs the reference Vyukov queue", r(ratioPair), atMost(1.2), "x"),
		target("1P/1C processes, spinning, 64 B: mpmc ns/msg vs the reference", r(ratioProcSpin), atMost(1.2), "x"),
		target("1P/1C goroutines, spinning, 64 B: mpmc ns/msg vs the reference", r(ratioGorSpin), atMost(1.2), "x"),
	}
	for _, sh := range inprocShapes {
		ts = append(ts, target(fmt.Sprintf("single-message calls in one process, %dP/%dC: mpmc msgs/s vs buffered channel", sh[0], sh[1]), r(ratioInproc(sh[0], sh[1], mechChan)), atLeast(1.2), "x"))
	}
	ts = append(ts,
		target("across processes 64 B 1P/1C: mpmc msgs/s vs shmipc-go streaming (tuned as its benchmarks)", r(ratioShmipcStream(mechShmipcTuned)), atLeast(5), "x"),
		target("ping-pong p50: shmipc-go (tuned) over mpmc (default, peer active)", r(ratioShmipcPing(mechShmipcTuned)), atLeast(100), "x"),
	)
	if res.Syscalls.Tool != "" {
		ts = append(ts, target("system calls per message under saturation (1P/1C 64 B, "+res.Syscalls.Tool+")", seriesMedian(res.Syscalls.PerMessage), atMost(0.001), ""))
	}
	ts = append(ts,
		target("CPU of a consumer blocked on an empty queue", seriesMedian(res.BlockedCPU.CorePercent), atMost(0.1), "% of a core"),
		target(fmt.Sprintf("OS threads of a process with %d goroutines blocked in Dequeue", res.Threads.Goroutines), seriesMedian(res.Threads.Blocked), atMost(16), "threads"),
		target("ping-pong p50, default waiting, peer active", res.pingP50("mpmc default, peer active"), atMost(1000), "ns"),
		target("ping-pong p50, default waiting, both sides asleep, vs raw futex (both asleep)", r(ratioPing("mpmc default, both asleep", "raw futex, both asleep")), atMost(1.2), "x"),
	)
	for _, size := range tputSizes {
		ts = append(ts, target(fmt.Sprintf("across processes %s: mpmc 4P/4C vs 1P/1C msgs/s", fmtSize(size)), r(ratioScale(size, mechQueue)), atLeast(0.7), "x"))
	}
	for _, sh := range inprocShapes {
		ts = append(ts, target(fmt.Sprintf("batches of 32 in one process vs channel, %dP/%dC: mpmc EnqueueBatch/DequeueBatch (64 B) msgs/s vs buffered channel (one value per send)", sh[0], sh[1]), r(ratioBatchInproc(sh[0], sh[1])), atLeast(8), "x"))
	}
	for _, sh := range tputShapes {
		ts = append(ts, target(fmt.Sprintf("batches of 32 across processes vs single-message, 64 B %dP/%dC: mpmc EnqueueBatch/DequeueBatch msgs/s vs Enqueue/Dequeue", sh[0], sh[1]), r(ratioBatchProc(sh[0], sh[1])), atLeast(3), "x"))
	}
	var zc []float64
	for _, size := range zcSizes {
		zc = append(zc, r(ratioZeroCopy(size)))
	}
	ts = append(ts, infoTarget("zero-copy across processes vs copy, 1P/1C: Reserve/Commit+Take/Release msgs/s vs Enqueue/Dequeue (informational)", zc, zcSizes))
	for _, p := range pendingCases {
		ts = append(ts, Target{Name: p.Name, Limit: p.Limit, Unit: "x", Pending: p.API, Value: 0})
	}
	return ts
}

// infoTarget is an informational target: ratios vs, one per message size
// of sizes, shown as text; measured if all of them were.
func infoTarget(name string, vs []float64, sizes []int) Target {
	t := Target{Name: name, Unit: "x", Measured: len(vs) > 0}
	for i, v := range vs {
		if i > 0 {
			t.Info += ", "
		}
		t.Info += fmt.Sprintf("%s at %s", fmtX(v), fmtSize(sizes[i]))
		t.Measured = t.Measured && !math.IsNaN(v)
	}
	return t
}

// ratioOf returns the median of the named ratio, or NaN.
func (r *Results) ratioOf(name string) float64 {
	for _, rt := range r.Ratios {
		if rt.Name == name && len(rt.Values) > 0 {
			return rt.Median
		}
	}
	return math.NaN()
}

// pingP50 returns the median p50 of the named ping-pong case, or NaN.
func (r *Results) pingP50(name string) float64 {
	for _, p := range r.PingPong {
		if p.Name == name {
			return seriesMedian(p.P50Ns)
		}
	}
	return math.NaN()
}
