package main

// Aggregation: medians over repetitions, paired ratios, and the targets,
// into the structure written to results.json.

import (
	"fmt"
	"math"
	"time"
)

// Results is everything a run measured, as written to results.json. Series
// hold one value per repetition; medians are over repetitions; ratios are
// medians of per-repetition ratios.
type Results struct {
	Machine    machine
	Options    options
	StartedAt  time.Time
	FinishedAt time.Time
	Notes      []string
	// LoadAvg is the machine's 1-minute load average read before each
	// measurement (the machine is shared; a load above the core count
	// means the measurements competed for CPU).
	LoadAvg Series

	InProcess  []InprocRow
	FloorNs    Series
	Throughput []TputRow
	PingPong   []PingRow
	Syscalls   SyscallSummary
	BlockedCPU IdleSummary
	Threads    ThreadsSummary
	Ratios     []Ratio
	Targets    []Target
}

// Series is a measured quantity: its per-repetition values and their median.
type Series struct {
	Values []float64
	Median float64
}

func newSeries(v []float64) Series { return Series{Values: v, Median: fin(median(v))} }

// InprocRow is one in-process mechanism and shape.
type InprocRow struct {
	Mechanism  string
	Producers  int
	Consumers  int
	NsPerMsg   Series
	MsgsPerSec float64 // 1e9 / median ns per message
}

// TputRow is one cross-process mechanism, message size and shape.
type TputRow struct {
	Mechanism  string
	Size       int
	Producers  int
	Consumers  int
	MsgsPerSec Series
	// QueueEventsPerMsg is the queue's futex sleeps plus wake-ups per
	// message (mpmc only, from its Stats).
	QueueEventsPerMsg Series
}

// PingRow is one ping-pong configuration; times in nanoseconds.
type PingRow struct {
	Name            string
	Mechanism       string
	P50Ns           Series
	P99Ns           Series
	SleepsPerRTT    float64 // queue futex sleeps per round trip (mpmc only), median
	WakeupsPerRTT   float64 // queue FUTEX_WAKE calls per round trip (mpmc only), median
	SamplesEachTime int
}

// SyscallSummary is the system-call count under saturation.
type SyscallSummary struct {
	Tool                  string
	PerMessage            Series // from outside, baseline subtracted
	QueueEventsPerMessage Series // queue sleeps + wake-ups per message
	Runs                  []syscallOutcome
	Strace                *syscallOutcome `json:",omitempty"`
}

// IdleSummary is the CPU used by a consumer blocked on an empty queue.
type IdleSummary struct {
	CorePercent Series
	Runs        []idleOutcome
}

// ThreadsSummary is the thread count of a process with many goroutines
// blocked in Dequeue.
type ThreadsSummary struct {
	Goroutines int
	Blocked    Series
	Runs       []threadsResult
}

// Ratio is a ratio of two measurements of the same repetitions.
type Ratio struct {
	Name   string
	Values []float64
	Median float64
}

// Target is one goal of the queue, evaluated on this run.
type Target struct {
	Name   string
	Value  float64
	Limit  float64
	AtMost bool // the value must be at most Limit (else at least)
	Met    bool
	Unit   string
	// Measured is false when the run lacks what the target needs (Value
	// is then 0 and Met false).
	Measured bool
}

func aggregate(o options, r *raw, started time.Time) *Results {
	res := &Results{Machine: machineInfo(), Options: o, StartedAt: started, FinishedAt: time.Now(), Notes: r.notes, LoadAvg: newSeries(r.loads)}
	s := r.s
	ratio := func(name string, a, b []float64) Ratio {
		v, m := pairedRatio(a, b)
		rt := Ratio{Name: name, Values: v, Median: fin(m)}
		res.Ratios = append(res.Ratios, rt)
		return rt
	}
	inv := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = 1 / x
		}
		return out
	}

	// In process.
	for _, sh := range inprocShapes {
		for _, m := range inprocMechs {
			ic := inprocCase{Mech: m, P: sh[0], C: sh[1]}
			v := newSeries(s["inproc/"+ic.key()])
			res.InProcess = append(res.InProcess, InprocRow{Mechanism: m, Producers: sh[0], Consumers: sh[1], NsPerMsg: v, MsgsPerSec: fin(1e9 / v.Median)})
		}
		q := s["inproc/"+inprocCase{mechQueue, sh[0], sh[1]}.key()]
		for _, m := range inprocMechs[1:] {
			ratio(fmt.Sprintf("in-process %dx%d: mpmc msgs/s over %s", sh[0], sh[1], m), s["inproc/"+inprocCase{m, sh[0], sh[1]}.key()], q)
		}
	}
	res.FloorNs = newSeries(s["floor"])

	// Across processes.
	for _, size := range tputSizes {
		for _, sh := range tputShapes {
			for _, m := range r.tputMechs {
				tc := tputCase{Mech: m, Size: size, P: sh[0], C: sh[1]}
				res.Throughput = append(res.Throughput, TputRow{Mechanism: m, Size: size, Producers: sh[0], Consumers: sh[1], MsgsPerSec: newSeries(s["tput/"+tc.key()]), QueueEventsPerMsg: newSeries(s["tputev/"+tc.key()])})
			}
			q := s["tput/"+tputKey(mechQueue, size, sh[0], sh[1])]
			for _, m := range r.tputMechs[1:] {
				ratio(fmt.Sprintf("across processes %d B %dx%d: mpmc msgs/s over %s", size, sh[0], sh[1], m), q, s["tput/"+tputKey(m, size, sh[0], sh[1])])
			}
		}
		for _, m := range r.tputMechs {
			ratio(fmt.Sprintf("across processes %d B: %s 4x4 over 1x1 msgs/s", size, m),
				s["tput/"+tputKey(m, size, 4, 4)], s["tput/"+tputKey(m, size, 1, 1)])
		}
	}
	q11 := s["tput/"+tputKey(mechQueue, 64, 1, 1)]
	floorRatio := ratio("across processes 64 B 1x1: mpmc ns/msg over the floor (one TryEnqueue+TryDequeue)", inv(q11), scale(s["floor"], 1e-9))

	// Ping-pong.
	for _, pc := range pingCases {
		row := PingRow{Name: pc.Name, Mechanism: pc.Mech, P50Ns: newSeries(s["ping/"+pc.Name+"/p50"]), P99Ns: newSeries(s["ping/"+pc.Name+"/p99"])}
		var sl, wk []float64
		for _, out := range r.pings[pc.Name] {
			row.SamplesEachTime = out.Samples
			if pc.Mech == mechQueue && out.Samples > 0 {
				// Counters include the warm-up round trips.
				n := float64(out.Samples + max(out.Samples/10, 10))
				sl = append(sl, float64(out.Sleeps)/n)
				wk = append(wk, float64(out.Wakeups)/n)
			}
		}
		row.SleepsPerRTT, row.WakeupsPerRTT = fin(median(sl)), fin(median(wk))
		res.PingPong = append(res.PingPong, row)
	}
	for _, pc := range pingCases {
		if pc.Name == "raw futex" || pc.Name == "raw futex, both asleep" {
			continue
		}
		ref := "raw futex"
		if pc.Asleep {
			ref = "raw futex, both asleep"
		}
		ratio(fmt.Sprintf("ping-pong p50: %s over %s", pc.Name, ref), s["ping/"+pc.Name+"/p50"], s["ping/"+ref+"/p50"])
	}
	ratio("ping-pong p50: mpmc default, both asleep over raw futex (back to back)", s["ping/mpmc default, both asleep/p50"], s["ping/raw futex/p50"])

	// System calls, idle CPU, threads.
	res.Syscalls = SyscallSummary{PerMessage: newSeries(s["syscalls/per-msg"]), QueueEventsPerMessage: newSeries(s["syscalls/events-per-msg"]), Runs: r.syscalls, Strace: r.strace}
	if len(r.syscalls) > 0 {
		res.Syscalls.Tool = r.syscalls[0].Tool
	}
	res.BlockedCPU = IdleSummary{CorePercent: newSeries(s["idle/core%"]), Runs: r.idle}
	res.Threads = ThreadsSummary{Goroutines: o.Goroutines, Blocked: newSeries(s["threads"]), Runs: r.threads}

	// Targets.
	find := res.ratioOf
	add := func(t Target, ok bool) {
		t.Measured = !math.IsNaN(t.Value)
		t.Met = t.Measured && ok
		t.Value = fin(t.Value)
		res.Targets = append(res.Targets, t)
	}
	atLeast := func(name string, v, limit float64, unit string) {
		add(Target{Name: name, Value: v, Limit: limit, Unit: unit}, v >= limit)
	}
	atMost := func(name string, v, limit float64, unit string) {
		add(Target{Name: name, Value: v, Limit: limit, AtMost: true, Unit: unit}, v <= limit)
	}
	for _, sh := range inprocShapes {
		atLeast(fmt.Sprintf("in-process %dP/%dC: mpmc msgs/s vs buffered channel", sh[0], sh[1]),
			find(fmt.Sprintf("in-process %dx%d: mpmc msgs/s over %s", sh[0], sh[1], mechChan)), 4, "x")
	}
	atLeast("across processes 64 B 1P/1C: mpmc vs pipe", find("across processes 64 B 1x1: mpmc msgs/s over "+mechPipe), 30, "x")
	atLeast("across processes 64 B 1P/1C: mpmc vs unix SOCK_SEQPACKET", find("across processes 64 B 1x1: mpmc msgs/s over "+mechUnixSock), 60, "x")
	atMost("across processes 64 B 1P/1C: mpmc ns/msg vs uncontended floor", find(floorRatio.Name), 2.5, "x")
	for _, size := range tputSizes {
		atLeast(fmt.Sprintf("across processes %d B: mpmc 4P/4C vs 1P/1C msgs/s", size), find(fmt.Sprintf("across processes %d B: %s 4x4 over 1x1 msgs/s", size, mechQueue)), 0.5, "x")
	}
	if res.Syscalls.Tool != "" {
		atMost("system calls per message under saturation (1P/1C 64 B, "+res.Syscalls.Tool+")", seriesMedian(res.Syscalls.PerMessage), 0.001, "")
	}
	atMost("CPU of a consumer blocked on an empty queue", seriesMedian(res.BlockedCPU.CorePercent), 0.1, "% of a core")
	atMost("ping-pong p50, default waiting, both sides asleep, vs raw futex (both asleep)", find("ping-pong p50: mpmc default, both asleep over raw futex, both asleep"), 1.2, "x")
	atMost("ping-pong p50, default waiting, peer active", s50(res, "mpmc default, peer active"), 1000, "ns")
	return res
}

func s50(res *Results, name string) float64 {
	for _, p := range res.PingPong {
		if p.Name == name {
			return seriesMedian(p.P50Ns)
		}
	}
	return math.NaN()
}

// seriesMedian is the median of s, or NaN if nothing was measured.
func seriesMedian(s Series) float64 {
	if len(s.Values) == 0 {
		return math.NaN()
	}
	return s.Median
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}
