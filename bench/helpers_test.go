package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	in := []float64{5, 1, 3}
	if got := median(in); got != 3 {
		t.Errorf("median odd = %v, want 3", got)
	}
	if !slices.Equal(in, []float64{5, 1, 3}) {
		t.Errorf("median reordered its input: %v", in)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median even = %v, want 2.5", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing is not NaN")
	}
}

func TestPairedRatio(t *testing.T) {
	// Rep by rep: 10/2, 9/3, 8/0 (skipped), and the extra 7 has no pair.
	v, m := pairedRatio([]float64{10, 9, 8, 7}, []float64{2, 3, 0})
	if !slices.Equal(v, []float64{5, 3}) || m != 4 {
		t.Errorf("pairedRatio = %v, %v; want [5 3], 4", v, m)
	}
	// The median of ratios is not the ratio of medians.
	_, m = pairedRatio([]float64{1, 100, 10}, []float64{1, 10, 100})
	if m != 1 {
		t.Errorf("median of ratios = %v, want 1", m)
	}
	if _, m := pairedRatio(nil, nil); !math.IsNaN(m) {
		t.Errorf("ratio of nothing = %v, want NaN", m)
	}
}

func TestFin(t *testing.T) {
	if fin(math.NaN()) != 0 || fin(math.Inf(1)) != 0 || fin(2.5) != 2.5 {
		t.Error("fin does not map NaN and Inf to 0 and keep the rest")
	}
}

func TestSummarize(t *testing.T) {
	r := summarize([]float64{30, 10, 20, 40})
	if r.Samples != 4 || r.Min != 10 || r.P50 != 20 || r.P99 != 40 || r.Mean != 25 {
		t.Errorf("summarize = %+v", r)
	}
	if summarize(nil).Samples != 0 {
		t.Error("summarize of nothing has samples")
	}
}

func TestTarget(t *testing.T) {
	cases := []struct {
		v        float64
		g        goal
		met, msr bool
	}{
		{1.1, atMost(1.2), true, true},
		{1.3, atMost(1.2), false, true},
		{1.2, atMost(1.2), true, true},
		{5, atLeast(5), true, true},
		{4.9, atLeast(5), false, true},
		{math.NaN(), atLeast(5), false, false},
	}
	for _, c := range cases {
		tg := target("t", c.v, c.g, "x")
		if tg.Met != c.met || tg.Measured != c.msr || math.IsNaN(tg.Value) {
			t.Errorf("target(%v, %+v) = %+v, want met %v measured %v", c.v, c.g, tg, c.met, c.msr)
		}
	}
}

// syntheticResults is a run with made-up numbers: ratios as given.
func syntheticResults(ratios map[string]float64) *Results {
	r := &Results{Machine: machine{CPUModel: "Test CPU", Cores: 2}, Options: defaultOptions()}
	for name, v := range ratios {
		r.Ratios = append(r.Ratios, Ratio{Name: name, Values: []float64{v}, Median: v})
	}
	r.Threads = ThreadsSummary{Goroutines: 1000, Blocked: newSeries([]float64{5})}
	r.BlockedCPU = IdleSummary{CorePercent: newSeries([]float64{0.05})}
	r.Targets = evalTargets(r)
	return r
}

func TestEvalTargets(t *testing.T) {
	r := syntheticResults(map[string]float64{ratioPair: 1.5, ratioProcSpin: 1.1, ratioShmipcStream(mechShmipcTuned): 6})
	byName := map[string]Target{}
	pending := 0
	for _, tg := range r.Targets {
		byName[tg.Name] = tg
		if tg.Pending != "" {
			pending++
			if tg.Measured || tg.Met {
				t.Errorf("pending target %q counts as measured or met", tg.Name)
			}
		}
	}
	if pending != 0 {
		t.Errorf("%d pending targets, want none (every API has landed)", pending)
	}
	check := func(prefix string, met, measured bool) {
		t.Helper()
		for name, tg := range byName {
			if strings.HasPrefix(name, prefix) {
				if tg.Met != met || tg.Measured != measured {
					t.Errorf("%q: met %v measured %v, want %v %v", name, tg.Met, tg.Measured, met, measured)
				}
				return
			}
		}
		t.Errorf("no target %q", prefix)
	}
	check("pair on one goroutine", false, true)
	check("1P/1C processes, spinning", true, true)
	check("across processes 64 B 1P/1C: mpmc msgs/s vs shmipc-go", true, true)
	check("1P/1C goroutines, spinning", false, false)
	check("OS threads of a process with 1000", true, true)
	check("CPU of a consumer blocked", true, true)
}

func TestMarkdown(t *testing.T) {
	r := syntheticResults(map[string]float64{ratioPair: 1.5})
	r.Floor = []FloorRow{{Mechanism: mechQueue, NsPerPair: newSeries([]float64{60})}, {Mechanism: mechRef, NsPerPair: newSeries([]float64{40})}}
	r.Shmipc = []ShmipcRow{{Mechanism: mechShmipcTuned, MsgsPerSec: newSeries([]float64{2e6}), QueueFull: []uint64{0}, FallbackWrites: []uint64{7}}}
	r.Notes = []string{"a note"}
	md, err := r.markdown()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Benchmark results", "| machine | Test CPU, 2 logical CPUs", "| pair on one goroutine (TryEnqueue+TryDequeue, 64 B): mpmc vs the reference Vyukov queue | 1.5x | <= 1.2x | **missed** |",
		"| one goroutine, TryEnqueue+TryDequeue pair, ns per pair | 40.0 ns | 60.0 ns | 1.50x |", "| shmipc-go tuned | 2.00 M/s |", "| 0 | 7 |",
		"None: every API the cases need is in the library", "## Pending cases", "## Batches of 32", "## Zero-copy against copying", "- a note", "Not measured: no tool could count"} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
	// Every table row has as many cells as its head.
	var cols int
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			cols = 0
			continue
		}
		n := strings.Count(line, "|")
		if cols == 0 {
			cols = n
		} else if n != cols {
			t.Errorf("row with %d bars under a head with %d: %s", n, cols, line)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{fmtNs(12.34), "12.3 ns"}, {fmtNs(1500), "1.50 µs"}, {fmtNs(2.5e6), "2.50 ms"}, {fmtNs(math.NaN()), "n/a"},
		{fmtRate(4.45e6), "4.45 M/s"}, {fmtRate(2500), "2.5 k/s"}, {fmtRate(12), "12 /s"},
		{fmtX(1.234), "1.23x"}, {fmtX(250), "250x"}, {fmtSize(64), "64 B"}, {fmtSize(1024), "1 KiB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestParseCounts(t *testing.T) {
	dir := t.TempDir()
	perf := filepath.Join(dir, "perf")
	os.WriteFile(perf, []byte("# started on ...\n\n1234,,raw_syscalls:sys_enter,100.00,,\n"), 0o644)
	if n, _, err := parseCounts(toolPerf, perf); err != nil || n != 1234 {
		t.Errorf("perf: %d, %v; want 1234", n, err)
	}
	os.WriteFile(perf, []byte("nothing here\n"), 0o644)
	if _, _, err := parseCounts(toolPerf, perf); err == nil {
		t.Error("perf output without a count parsed")
	}
	st := filepath.Join(dir, "strace")
	os.WriteFile(st, []byte(`% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.000600           2       300        10 futex
 40.00    0.000400           1       200           nanosleep
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000           2       500        10 total
`), 0o644)
	n, per, err := parseCounts(toolStrace, st)
	if err != nil || n != 500 || per["futex"] != 300 || per["nanosleep"] != 200 {
		t.Errorf("strace: %d %v %v", n, per, err)
	}
	top := topCounts(per, 1)
	if len(top) != 1 || top[0].Name != "futex" {
		t.Errorf("topCounts = %v", top)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-reps", "3", "-only", "floor", "-queue-spin", "5us", "-out", "x"})
	if err != nil {
		t.Fatal(err)
	}
	q := defaultOptions()
	q.quick()
	if !o.Quick || o.Reps != 3 || o.Duration != q.Duration || o.Only != "floor" || !o.QueueSpinSet || o.QueueSpin != 5*time.Microsecond || o.OutDir != "x" {
		t.Errorf("parseFlags = %+v", o)
	}
	o, err = parseFlags(nil)
	if err != nil || o.Quick || o.Reps != defaultOptions().Reps || o.OutDir != "results" {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	if _, err := parseFlags([]string{"-queue-spin", "soon"}); err == nil {
		t.Error("a bad duration parsed")
	}
}

func TestRefQueue(t *testing.T) {
	path := shmPath("test-ref")
	defer done(path)
	if _, err := createRef(path, 3); err == nil {
		t.Fatal("capacity 3 accepted")
	}
	q, err := createRef(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	other, err := openRef(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	buf := make([]byte, refMaxMsg)
	if _, err := q.tryDequeue(buf); err != errRefEmpty {
		t.Fatalf("empty queue: %v", err)
	}
	for i := range 4 {
		if err := q.tryEnqueue([]byte{byte(i), 'x'}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.tryEnqueue([]byte{9}); err != errRefFull {
		t.Fatalf("full queue: %v", err)
	}
	if err := q.tryEnqueue(make([]byte, refMaxMsg+1)); err == nil {
		t.Fatal("oversized message accepted")
	}
	q.shutdown()
	for i := range 4 { // through the other mapping, in order, after shutdown
		n, err := other.tryDequeue(buf)
		if err != nil || n != 2 || buf[0] != byte(i) {
			t.Fatalf("dequeue %d: %d %v %v", i, n, buf[:n], err)
		}
	}
	if _, err := other.tryDequeue(buf); err != errRefClosed {
		t.Fatalf("drained closed queue: %v", err)
	}
}

// TestRefQueueConcurrent passes every value exactly once through the
// reference queue with two producers and two consumers.
func TestRefQueueConcurrent(t *testing.T) {
	path := shmPath("test-ref")
	defer done(path)
	q, err := createRef(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	const per = 20000
	var prod, cons sync.WaitGroup
	seen := make([][]int, 2)
	for p := range 2 {
		prod.Go(func() {
			e := refEnd{q}
			for i := range per {
				if err := e.send([]byte{byte(p), byte(i), byte(i >> 8), byte(i >> 16)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for c := range 2 {
		cons.Go(func() {
			e, buf := refEnd{q}, make([]byte, refMaxMsg)
			for {
				n, err := e.recv(buf)
				if err == errEOS {
					return
				}
				if err != nil || n != 4 {
					t.Errorf("recv: %d %v", n, err)
					return
				}
				seen[c] = append(seen[c], int(buf[0])<<24|int(buf[1])|int(buf[2])<<8|int(buf[3])<<16)
			}
		})
	}
	prod.Wait()
	q.shutdown()
	cons.Wait()
	all := slices.Concat(seen[0], seen[1])
	slices.Sort(all)
	if len(all) != 2*per || len(slices.Compact(all)) != 2*per {
		t.Errorf("%d values received, %d distinct; want %d", len(all), len(slices.Compact(slices.Clone(all))), 2*per)
	}
}

func TestChildRole(t *testing.T) {
	var res struct{}
	if err := noopRole.run(context.Background(), struct{}{}, 20*time.Second, &res); err != nil {
		t.Fatal(err)
	}
	// An unknown role fails with its stderr attached.
	err := role[struct{}]{"no-such-role"}.run(context.Background(), struct{}{}, 20*time.Second, &res)
	if err == nil || !strings.Contains(err.Error(), "unknown child role") {
		t.Errorf("unknown role: %v", err)
	}
}
