package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as the harness's child processes.
func TestMain(m *testing.M) {
	if isChild() {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// testLog sends the harness's progress lines to t.Log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestQuickRun runs the quick mode end to end and checks the structure of
// what it writes: every mechanism present, every measured quantity positive.
// It never asserts anything about timing.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns dozens of processes")
	}
	o := defaultOptions()
	o.quick()
	o.OutDir = t.TempDir()
	if err := run(o, testLog{t}); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"throughput.png", "pingpong.png"} {
		b, err := os.ReadFile(filepath.Join(o.OutDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s is not a PNG", name)
		}
	}
	md, err := os.ReadFile(filepath.Join(o.OutDir, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(o.OutDir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Results
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatal(err)
	}

	if r.Machine.CPUModel == "" || r.Machine.Kernel == "" || r.Machine.GoVersion == "" || r.Machine.Cores < 1 {
		t.Errorf("machine description incomplete: %+v", r.Machine)
	}
	positive := func(what string, s Series) {
		t.Helper()
		if len(s.Values) != o.Reps {
			t.Errorf("%s: %d values, want %d", what, len(s.Values), o.Reps)
		}
		for _, v := range s.Values {
			if !(v > 0) {
				t.Errorf("%s: value %v is not positive", what, v)
			}
		}
		if !(s.Median > 0) {
			t.Errorf("%s: median %v is not positive", what, s.Median)
		}
	}

	for _, ic := range inprocCases {
		positive("in-process "+ic.key(), r.inproc(ic.Mech, ic.P, ic.C).NsPerMsg)
	}
	for _, m := range floorMechs {
		positive("pair "+m, r.floorRow(m).NsPerPair)
	}
	if len(r.Shmipc) != len(shmipcMechs) {
		t.Errorf("%d shmipc-go rows, want %d", len(r.Shmipc), len(shmipcMechs))
	}
	for _, row := range r.Shmipc {
		positive(row.Mechanism+" streaming", row.MsgsPerSec)
		positive(row.Mechanism+" ping-pong p50", row.P50Ns)
		if len(row.QueueFull) != o.Reps || len(row.FallbackWrites) != o.Reps {
			t.Errorf("%s: %d queue-full and %d fallback counts, want %d", row.Mechanism, len(row.QueueFull), len(row.FallbackWrites), o.Reps)
		}
	}

	mechs := []string{mechQueue, mechPipe, mechUnixSock, mechMQ}
	if strings.Contains(strings.Join(r.Notes, "\n"), "POSIX message queues skipped") {
		mechs = mechs[:3]
	}
	for _, tc := range tputCases(mechs) {
		positive("throughput "+tc.key(), r.tput(tc.Mech, tc.Size, tc.P, tc.C))
	}

	if len(r.PingPong) != len(pingCases) {
		t.Errorf("%d ping-pong rows, want %d", len(r.PingPong), len(pingCases))
	}
	for i, p := range r.PingPong {
		if i < len(pingCases) && p.Name != pingCases[i].Name {
			t.Errorf("ping-pong row %d is %q, want %q", i, p.Name, pingCases[i].Name)
		}
		positive("ping-pong p50 "+p.Name, p.P50Ns)
		positive("ping-pong p99 "+p.Name, p.P99Ns)
		if p.P99Ns.Median < p.P50Ns.Median {
			t.Errorf("ping-pong %s: p99 %v below p50 %v", p.Name, p.P99Ns.Median, p.P50Ns.Median)
		}
	}

	if r.Syscalls.Tool != "" {
		if len(r.Syscalls.Runs) != o.Reps {
			t.Errorf("%d system-call runs, want %d", len(r.Syscalls.Runs), o.Reps)
		}
		for _, s := range r.Syscalls.Runs {
			if s.Messages <= 0 || s.Syscalls <= 0 || s.BaselineSyscalls <= 0 {
				t.Errorf("system-call run has non-positive counts: %+v", s)
			}
		}
	} else {
		t.Logf("system calls not counted here: %v", r.Notes)
	}
	if len(r.BlockedCPU.CorePercent.Values) != o.Reps {
		t.Errorf("blocked CPU: %d values, want %d", len(r.BlockedCPU.CorePercent.Values), o.Reps)
	}
	for _, run := range r.BlockedCPU.Runs {
		if run.WallNs <= 0 || run.CPUNs < 0 {
			t.Errorf("blocked CPU run: %+v", run)
		}
	}
	positive("threads", r.Threads.Blocked)
	if r.Threads.Goroutines != o.Goroutines {
		t.Errorf("threads: %d goroutines, want %d", r.Threads.Goroutines, o.Goroutines)
	}

	pending := 0
	for _, tg := range r.Targets {
		if tg.Pending != "" {
			pending++
			continue
		}
		if tg.Name == "" || !(tg.Limit > 0 || tg.Info != "") || !tg.Measured {
			t.Errorf("malformed or unmeasured target %+v", tg)
		}
		if !strings.Contains(string(md), tg.Name) {
			t.Errorf("RESULTS.md lacks target %q", tg.Name)
		}
	}
	// Every API the cases wait for has landed: nothing is pending.
	if pending != 0 || len(pendingCases) != 0 {
		t.Errorf("%d pending targets and %d pending cases, want none", pending, len(pendingCases))
	}
	for _, prefix := range []string{"batches of 32 in one process vs channel, 1P/1C", "batches of 32 in one process vs channel, 4P/4C",
		"batches of 32 across processes vs single-message, 64 B 1P/1C", "batches of 32 across processes vs single-message, 64 B 4P/4C", "zero-copy across processes vs copy"} {
		if !slices.ContainsFunc(r.Targets, func(tg Target) bool { return strings.HasPrefix(tg.Name, prefix) }) {
			t.Errorf("no target %q", prefix)
		}
	}
	for _, size := range zcSizes {
		if !strings.Contains(string(md), "| "+fmtSize(size)+" | ") {
			t.Errorf("RESULTS.md lacks the zero-copy row of %s", fmtSize(size))
		}
	}
	sections := []string{"## Targets", "## The field: mpmc against", "## The field: cloudwego", "## In process", "## Across processes", "## Batches of 32", "## Zero-copy against copying",
		"## Ping-pong", "## System calls", "## Idle cost", "## Pending cases", r.Machine.CPUModel, mechShmipcTuned, mechShmipcDefault, mechQueueBatch}
	for _, want := range append(append(sections, inprocMechs...), mechs...) {
		if !strings.Contains(string(md), want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}

	// Nothing of this process may be left in /dev/shm.
	ents, err := os.ReadDir("/dev/shm")
	if err != nil {
		t.Fatal(err)
	}
	mine := shmPrefix + strconv.Itoa(os.Getpid()) + "-"
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), mine) {
			t.Errorf("left in /dev/shm: %s", e.Name())
		}
	}
}
