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
	Floor      []FloorRow
	Throughput []TputRow
	PingPong   []PingRow
	Shmipc     []ShmipcRow
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

// FloorRow is one uncontended enqueue+dequeue pair on one goroutine.
type FloorRow struct {
	Mechanism string
	NsPerPair Series
}

// ShmipcRow is one configuration of shmipc-go: streaming 64 B from one
// process to another, and ping-pong.
type ShmipcRow struct {
	Mechanism  string
	MsgsPerSec Series
	P50Ns      Series
	P99Ns      Series
	// QueueFull and FallbackWrites are, per streaming run, the producer's
	// Flush calls that met a full IO queue and its writes that went over
	// the unix socket instead of shared memory.
	QueueFull      []uint64
	FallbackWrites []uint64
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
	// Pending names the library API the target waits for (then nothing
	// was measured).
	Pending string `json:",omitempty"`
	// Info, when set, makes the target informational (it has no goal, and
	// is never met): it is what was measured, as text.
	Info string `json:",omitempty"`
}

// Names of the ratios the targets and the report refer to.
const (
	ratioPair         = "pair on one goroutine: mpmc ns over the reference"
	ratioProcSpin     = "across processes 64 B 1x1, both spinning: mpmc ns/msg over the reference"
	ratioProcBlocking = "across processes 64 B 1x1: mpmc (Enqueue/Dequeue) ns/msg over the reference (spinning)"
	ratioGorSpin      = "in-process 1x1, both spinning: mpmc ns/msg over the reference"
	ratioGorBlocking  = "in-process 1x1: mpmc (Enqueue/Dequeue) ns/msg over the reference (spinning)"
	ratioFloor        = "across processes 64 B 1x1: mpmc ns/msg over the floor (one TryEnqueue+TryDequeue)"
)

// ratioInproc names the ratio of mpmc's in-process rate over mech's.
func ratioInproc(p, c int, mech string) string {
	return fmt.Sprintf("in-process %dx%d: mpmc msgs/s over %s", p, c, mech)
}

// ratioTput names the ratio of mpmc's cross-process rate over mech's.
func ratioTput(size, p, c int, mech string) string {
	return fmt.Sprintf("across processes %d B %dx%d: mpmc msgs/s over %s", size, p, c, mech)
}

// ratioScale names the ratio of mech's 4x4 rate over its 1x1 rate.
func ratioScale(size int, mech string) string {
	return fmt.Sprintf("across processes %d B: %s 4x4 over 1x1 msgs/s", size, mech)
}

// ratioPing names the ratio of a ping-pong p50 over its raw-futex peer.
func ratioPing(name, ref string) string { return fmt.Sprintf("ping-pong p50: %s over %s", name, ref) }

// ratioShmipcStream and ratioShmipcPing name mpmc against shmipc-go.
func ratioShmipcStream(mech string) string {
	return "across processes 64 B 1x1 streaming: mpmc msgs/s over " + mech
}
func ratioShmipcPing(mech string) string {
	return "ping-pong p50: " + mech + " over mpmc default, peer active"
}

// pingRef is the raw-futex case a ping-pong case is compared with.
func pingRef(pc ppCase) string {
	if pc.Asleep {
		return "raw futex, both asleep"
	}
	return "raw futex"
}

// aggregate turns what was measured into Results: rows, ratios, targets.
func aggregate(o options, r *raw, started time.Time) *Results {
	res := &Results{Machine: machineInfo(), Options: o, StartedAt: started, FinishedAt: time.Now(), Notes: r.notes, LoadAvg: newSeries(r.loads)}
	s := r.s
	ratio := func(name string, a, b []float64) { res.Ratios = append(res.Ratios, newRatio(name, a, b)) }
	inproc := func(m string, p, c int) []float64 { return s["inproc/"+inprocCase{m, p, c}.key()] }
	tput := func(m string, size, p, c int) []float64 { return s["tput/"+tputKey(m, size, p, c)] }

	for _, ic := range inprocCases {
		v := newSeries(s["inproc/"+ic.key()])
		res.InProcess = append(res.InProcess, InprocRow{Mechanism: ic.Mech, Producers: ic.P, Consumers: ic.C, NsPerMsg: v, MsgsPerSec: fin(1e9 / v.Median)})
		if ic.Mech != mechQueue && !isOwn(ic.Mech) {
			ratio(ratioInproc(ic.P, ic.C, ic.Mech), inproc(ic.Mech, ic.P, ic.C), inproc(mechQueue, ic.P, ic.C))
		}
	}
	ratio(ratioGorSpin, inproc(mechQueueSpin, 1, 1), inproc(mechRef, 1, 1))
	ratio(ratioGorBlocking, inproc(mechQueue, 1, 1), inproc(mechRef, 1, 1))
	for _, m := range floorMechs {
		res.Floor = append(res.Floor, FloorRow{Mechanism: m, NsPerPair: newSeries(s["floor/"+m])})
	}
	ratio(ratioPair, s["floor/"+mechQueue], s["floor/"+mechRef])

	for _, tc := range tputCases(r.tputMechs) {
		res.Throughput = append(res.Throughput, TputRow{Mechanism: tc.Mech, Size: tc.Size, Producers: tc.P, Consumers: tc.C, MsgsPerSec: newSeries(s["tput/"+tc.key()]), QueueEventsPerMsg: newSeries(s["tputev/"+tc.key()])})
		if tc.Mech != mechQueue && !isOwn(tc.Mech) {
			ratio(ratioTput(tc.Size, tc.P, tc.C, tc.Mech), tput(mechQueue, tc.Size, tc.P, tc.C), tput(tc.Mech, tc.Size, tc.P, tc.C))
		}
	}
	for _, size := range tputSizes {
		for _, m := range r.tputMechs {
			ratio(ratioScale(size, m), tput(m, size, 4, 4), tput(m, size, 1, 1))
		}
	}
	ratio(ratioProcSpin, tput(mechRef, 64, 1, 1), tput(mechQueueSpin, 64, 1, 1))
	ratio(ratioProcBlocking, tput(mechRef, 64, 1, 1), tput(mechQueue, 64, 1, 1))
	ratio(ratioFloor, inv(tput(mechQueue, 64, 1, 1)), scale(s["floor/"+mechQueue], 1e-9))
	res.Ratios = append(res.Ratios, bulkRatios(s)...)

	for _, pc := range pingCases {
		res.PingPong = append(res.PingPong, pingRow(pc, s, r.pings[pc.Name]))
		if pc.Mech != mechFutex {
			ratio(ratioPing(pc.Name, pingRef(pc)), s["ping/"+pc.Name+"/p50"], s["ping/"+pingRef(pc)+"/p50"])
		}
	}
	ratio(ratioPing("mpmc default, both asleep", "raw futex (back to back)"), s["ping/mpmc default, both asleep/p50"], s["ping/raw futex/p50"])

	for _, m := range shmipcMechs {
		row := ShmipcRow{Mechanism: m, MsgsPerSec: newSeries(s["shmipc/"+m+"/stream"]), P50Ns: newSeries(s["shmipc/"+m+"/p50"]), P99Ns: newSeries(s["shmipc/"+m+"/p99"])}
		for _, out := range r.shmipc[m+"/stream"] {
			row.QueueFull = append(row.QueueFull, out.Client.QueueFull)
			row.FallbackWrites = append(row.FallbackWrites, out.Client.FallbackW)
		}
		res.Shmipc = append(res.Shmipc, row)
		ratio(ratioShmipcStream(m), tput(mechQueue, 64, 1, 1), s["shmipc/"+m+"/stream"])
		ratio(ratioShmipcPing(m), s["shmipc/"+m+"/p50"], s["ping/mpmc default, peer active/p50"])
	}

	res.Syscalls = SyscallSummary{PerMessage: newSeries(s["syscalls/per-msg"]), QueueEventsPerMessage: newSeries(s["syscalls/events-per-msg"]), Runs: r.syscalls, Strace: r.strace}
	if len(r.syscalls) > 0 {
		res.Syscalls.Tool = r.syscalls[0].Tool
	}
	res.BlockedCPU = IdleSummary{CorePercent: newSeries(s["idle/core%"]), Runs: r.idle}
	res.Threads = ThreadsSummary{Goroutines: o.Goroutines, Blocked: newSeries(s["threads"]), Runs: r.threads}
	res.Targets = evalTargets(res)
	return res
}

// isSpinning reports whether mech is one of the two spinning queues (only
// compared with each other).
func isSpinning(mech string) bool { return mech == mechQueueSpin || mech == mechRef }

// isOwn reports whether mech is a variant of mpmc or the reference: compared
// only with their own peers, never as an alternative mpmc is faster than.
func isOwn(mech string) bool { return isSpinning(mech) || isBulk(mech) }

// newRatio is the paired ratio a over b, named name.
func newRatio(name string, a, b []float64) Ratio {
	v, m := pairedRatio(a, b)
	return Ratio{Name: name, Values: v, Median: fin(m)}
}

// pingRow aggregates the runs of one ping-pong case.
func pingRow(pc ppCase, s samples, runs []ppOutcome) PingRow {
	row := PingRow{Name: pc.Name, Mechanism: pc.Mech, P50Ns: newSeries(s["ping/"+pc.Name+"/p50"]), P99Ns: newSeries(s["ping/"+pc.Name+"/p99"])}
	var sl, wk []float64
	for _, out := range runs {
		row.SamplesEachTime = out.Samples
		if pc.Mech == mechQueue && out.Samples > 0 {
			// Counters include the warm-up round trips.
			n := float64(out.Samples + max(out.Samples/10, 10))
			sl = append(sl, float64(out.Sleeps)/n)
			wk = append(wk, float64(out.Wakeups)/n)
		}
	}
	row.SleepsPerRTT, row.WakeupsPerRTT = fin(median(sl)), fin(median(wk))
	return row
}

// seriesMedian is the median of s, or NaN if nothing was measured.
func seriesMedian(s Series) float64 {
	if len(s.Values) == 0 {
		return math.NaN()
	}
	return s.Median
}

// scale returns xs, each times f.
func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}

// inv returns 1/x for each x of xs.
func inv(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = 1 / x
	}
	return out
}
