package main

// RESULTS.md: report.tmpl (the layout and the prose) filled with tables
// built here from the Results (the numbers, formatted).

import (
	_ "embed"
	"fmt"
	"math"
	"slices"
	"strings"
	"text/template"

	"github.com/shmq/mpmc"
)

//go:embed report.tmpl
var reportTemplate string

// table is a markdown table: a head and rows of cells.
type table struct {
	Head []string
	Rows [][]string
}

func (t *table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

// reportView is what report.tmpl renders.
type reportView struct {
	R                                  *Results
	DefaultSpin                        string
	QueueCapacity                      int
	Machine, Targets, Field, Shmipc    table
	Inproc, Tput, Ping, Syscalls, Idle table
	Pending, Batch, ZeroCopy           table
	CrossNs, CrossFloor                string // mpmc 64 B 1P/1C across processes: ns/msg, and over the pair
}

var reportFuncs = template.FuncMap{
	"ns": fmtNs, "rate": fmtRate, "x": fmtX, "g": fmtG, "med": seriesMedian,
	"join": strings.Join, "joinNs": joinNs, "counts": fmtCounts,
}

// markdown renders the results.
func (r *Results) markdown() (string, error) {
	t, err := template.New("report").Funcs(reportFuncs).Parse(reportTemplate)
	if err != nil {
		return "", err
	}
	v := reportView{R: r, DefaultSpin: mpmc.DefaultSpin.String(), QueueCapacity: queueCapacity,
		Machine: r.machineTable(), Targets: r.targetsTable(), Field: r.fieldTable(), Shmipc: r.shmipcTable(),
		Inproc: r.inprocTable(), Tput: r.tputTable(), Ping: r.pingTable(), Syscalls: r.syscallsTable(), Idle: r.idleTable(), Pending: pendingTable(),
		Batch: r.batchTable(), ZeroCopy: r.zeroCopyTable(),
		CrossNs: fmtNs(1e9 / seriesMedian(r.tput(mechQueue, 64, 1, 1))), CrossFloor: fmtX(r.ratioOf(ratioFloor))}
	var b strings.Builder
	if err := t.Execute(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (r *Results) machineTable() table {
	m, o := r.Machine, r.Options
	t := table{Head: []string{"", ""}}
	t.add("machine", fmt.Sprintf("%s, %d logical CPUs (GOMAXPROCS %d)", m.CPUModel, m.Cores, m.GOMAXPROCS))
	t.add("kernel", m.Kernel)
	t.add("Go", m.GoVersion+" "+m.GOARCH)
	t.add("library", m.Library)
	t.add("date", fmt.Sprintf("%s (run took %s)", m.Date, r.FinishedAt.Sub(r.StartedAt).Round(1e9)))
	if l := r.LoadAvg.Values; len(l) > 0 {
		t.add("load", fmt.Sprintf("1-minute load average before each measurement: median %.2f, min %.2f, max %.2f, on %d CPUs (the machine is shared: other work competes for the CPUs and shows in every number)",
			r.LoadAvg.Median, slices.Min(l), slices.Max(l), m.Cores))
	}
	mode := ""
	if o.Quick {
		mode = " (quick smoke run: numbers are not meaningful)"
	}
	t.add("method", fmt.Sprintf("%d repetitions%s; every measurement of a repetition runs in a shuffled order; medians over repetitions; ratios are medians of per-repetition ratios (both sides measured in the same repetition)", o.Reps, mode))
	t.add("sizes", fmt.Sprintf("queues hold %d messages where they can be sized; cross-process runs stream for %v each; ping-pong %d round trips (%d when both asleep, gap %v)", queueCapacity, o.Duration, o.PingSamples, o.AsleepSamples, o.Gap))
	return t
}

func (r *Results) targetsTable() table {
	t := table{Head: []string{"target", "measured", "goal", "met"}}
	for _, tg := range r.Targets {
		op := ">="
		if tg.AtMost {
			op = "<="
		}
		goal := op + " " + fmtG(tg.Limit) + unitSep(tg.Unit)
		val, met := fmtG(tg.Value)+unitSep(tg.Unit), "**missed**"
		switch {
		case tg.Pending != "":
			val, met = "pending", "pending: "+tg.Pending+" not in the library yet"
			if tg.Limit == 0 {
				goal = "to be set"
			}
		case !tg.Measured:
			val, met = "n/a", "not measured"
		case tg.Info != "":
			val, goal, met = tg.Info, "none (informational)", "-"
		case tg.Met:
			met = "met"
		}
		t.add(tg.Name, val, goal, met)
	}
	return t
}

func (r *Results) fieldTable() table {
	t := table{Head: []string{"what", "reference Vyukov", "mpmc, spinning (Try calls)", "mpmc over reference", "mpmc, Enqueue/Dequeue", "mpmc over reference"}}
	floor := func(m string) string { return fmtNs(seriesMedian(r.floorRow(m).NsPerPair)) }
	t.add("one goroutine, TryEnqueue+TryDequeue pair, ns per pair", floor(mechRef), floor(mechQueue), fmtX(r.ratioOf(ratioPair)), "-", "-")
	p := func(m string) string { return fmtNs(1e9 / seriesMedian(r.tput(m, 64, 1, 1))) }
	t.add("1P/1C processes, 64 B, ns/msg", p(mechRef), p(mechQueueSpin), fmtX(r.ratioOf(ratioProcSpin)), p(mechQueue), fmtX(r.ratioOf(ratioProcBlocking)))
	g := func(m string) string { return fmtNs(seriesMedian(r.inproc(m, 1, 1).NsPerMsg)) }
	t.add("1P/1C goroutines, 64 B, ns/msg", g(mechRef), g(mechQueueSpin), fmtX(r.ratioOf(ratioGorSpin)), g(mechQueue)+" (8 B)", fmtX(r.ratioOf(ratioGorBlocking)))
	return t
}

func (r *Results) shmipcTable() table {
	t := table{Head: []string{"configuration", "streaming msgs/s", "mpmc msgs/s over it", "Flushes that met a full IO queue", "writes over the socket (fallback)", "ping-pong p50", "p99", "its p50 over mpmc's"}}
	for _, s := range r.Shmipc {
		t.add(s.Mechanism, fmtRate(seriesMedian(s.MsgsPerSec)), fmtX(r.ratioOf(ratioShmipcStream(s.Mechanism))), joinU(s.QueueFull), joinU(s.FallbackWrites),
			fmtNs(seriesMedian(s.P50Ns)), fmtNs(seriesMedian(s.P99Ns)), fmtX(r.ratioOf(ratioShmipcPing(s.Mechanism))))
	}
	return t
}

func (r *Results) inprocTable() table {
	t := table{Head: []string{"mechanism"}}
	for _, sh := range inprocShapes {
		n := fmt.Sprintf("%dP/%dC", sh[0], sh[1])
		t.Head = append(t.Head, n+" ns/msg", n+" msgs/s", "mpmc speed-up")
	}
	var mechs []string
	for _, ic := range inprocCases {
		if !slices.Contains(mechs, ic.Mech) && !isBulk(ic.Mech) {
			mechs = append(mechs, ic.Mech)
		}
	}
	for _, m := range mechs {
		row := []string{m}
		for _, sh := range inprocShapes {
			v := seriesMedian(r.inproc(m, sh[0], sh[1]).NsPerMsg)
			sp := "-"
			if m != mechQueue && !isOwn(m) {
				sp = fmtX(r.ratioOf(ratioInproc(sh[0], sh[1], m)))
			}
			row = append(row, fmtNs(v), fmtRate(1e9/v), sp)
		}
		t.add(row...)
	}
	return t
}

func (r *Results) tputTable() table {
	t := table{Head: []string{"mechanism", "message", "1P/1C msgs/s", "4P/4C msgs/s", "4/4 over 1/1", "mpmc speed-up 1/1", "mpmc speed-up 4/4", "queue sleeps+wake-ups per message 1/1, 4/4"}}
	for _, size := range tputSizes {
		for _, m := range r.tputMechs() {
			if isOwn(m) {
				continue
			}
			sp := func(p, c int) string {
				if m == mechQueue {
					return "-"
				}
				return fmtX(r.ratioOf(ratioTput(size, p, c, m)))
			}
			ev := "-"
			if m == mechQueue {
				ev = fmtG(seriesMedian(r.tputRow(m, size, 1, 1).QueueEventsPerMsg)) + ", " + fmtG(seriesMedian(r.tputRow(m, size, 4, 4).QueueEventsPerMsg))
			}
			t.add(m, fmtSize(size), fmtRate(seriesMedian(r.tput(m, size, 1, 1))), fmtRate(seriesMedian(r.tput(m, size, 4, 4))),
				fmtX(r.ratioOf(ratioScale(size, m))), sp(1, 1), sp(4, 4), ev)
		}
	}
	return t
}

func (r *Results) pingTable() table {
	t := table{Head: []string{"mechanism", "p50", "p99", "p50 over raw futex", "queue sleeps per round trip", "queue wake-ups per round trip"}}
	for i, p := range r.PingPong {
		rt, sl, wk := "-", "-", "-"
		if i < len(pingCases) && p.Mechanism != mechFutex {
			rt = fmtX(r.ratioOf(ratioPing(p.Name, pingRef(pingCases[i]))))
		}
		if p.Mechanism == mechQueue {
			sl, wk = fmtG(p.SleepsPerRTT), fmtG(p.WakeupsPerRTT)
		}
		t.add(p.Name, fmtNs(seriesMedian(p.P50Ns)), fmtNs(seriesMedian(p.P99Ns)), rt, sl, wk)
	}
	for _, s := range r.Shmipc {
		t.add(s.Mechanism, fmtNs(seriesMedian(s.P50Ns)), fmtNs(seriesMedian(s.P99Ns)), "-", "-", "-")
	}
	return t
}

func (r *Results) syscallsTable() table {
	t := table{Head: []string{"counted by", "messages", "system calls, streaming", "system calls, baseline (no messages)", "per message", "queue sleeps+wake-ups per message (Stats)"}}
	rows := r.Syscalls.Runs
	if r.Syscalls.Strace != nil {
		rows = append(slices.Clone(rows), *r.Syscalls.Strace)
	}
	for _, s := range rows {
		t.add(s.Tool, fmt.Sprint(s.Messages), fmt.Sprint(s.Syscalls), fmt.Sprint(s.BaselineSyscalls), fmtG(s.PerMessage), fmtG(s.EventsPerMessage))
	}
	return t
}

func (r *Results) idleTable() table {
	t := table{Head: []string{"measurement", "value"}}
	t.add(fmt.Sprintf("CPU of a consumer process blocked in Dequeue on an empty queue for %v (getrusage user+sys)", r.Options.IdleFor),
		fmt.Sprintf("%s%% of a core (repetitions: %s)", fmtG(seriesMedian(r.BlockedCPU.CorePercent)), joinG(r.BlockedCPU.CorePercent.Values)))
	before := 0
	if len(r.Threads.Runs) > 0 {
		before = r.Threads.Runs[0].Before
	}
	t.add(fmt.Sprintf("OS threads of a process with %d goroutines blocked in Dequeue (/proc/self/status)", r.Threads.Goroutines),
		fmt.Sprintf("%s (before the goroutines: %d)", fmtG(seriesMedian(r.Threads.Blocked)), before))
	return t
}

// joinU lists counts, one per repetition.
func joinU(v []uint64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

func pendingTable() table {
	t := table{Head: []string{"case", "waits for", "goal"}}
	for _, p := range pendingCases {
		goal := "to be set"
		if p.Limit > 0 {
			goal = ">= " + fmtX(p.Limit)
		}
		t.add(p.Name, p.API, goal)
	}
	return t
}

// tput returns the throughput series of a cross-process case.
func (r *Results) tput(mech string, size, p, c int) Series {
	return r.tputRow(mech, size, p, c).MsgsPerSec
}

func (r *Results) tputRow(mech string, size, p, c int) TputRow {
	for _, t := range r.Throughput {
		if t.Mechanism == mech && t.Size == size && t.Producers == p && t.Consumers == c {
			return t
		}
	}
	return TputRow{}
}

func (r *Results) inproc(mech string, p, c int) InprocRow {
	for _, t := range r.InProcess {
		if t.Mechanism == mech && t.Producers == p && t.Consumers == c {
			return t
		}
	}
	return InprocRow{NsPerMsg: Series{Median: math.NaN()}, MsgsPerSec: math.NaN()}
}

func (r *Results) floorRow(mech string) FloorRow {
	for _, f := range r.Floor {
		if f.Mechanism == mech {
			return f
		}
	}
	return FloorRow{}
}
