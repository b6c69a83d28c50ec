package main

// System calls per message under saturation, counted from outside the
// processes: each child of a 1P/1C queue run is started under `perf stat -e
// raw_syscalls:sys_enter` (or `strace -f -c`), once streaming for the set
// duration and once sending nothing (the baseline: start-up, joining the
// queue, shutdown). The difference over the number of messages is the cost
// per message; the queue's own counters (futex sleeps and wake-ups) are
// compared with it.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Syscall counting tools.
const (
	toolPerf   = "perf"
	toolStrace = "strace"
)

// syscallCount is the number of calls of one system call.
type syscallCount struct {
	Name  string
	Calls int64
}

// syscallOutcome is one counted run and its baseline.
type syscallOutcome struct {
	Tool              string
	Messages          int64
	Syscalls          int64 // both children, streaming run
	BaselineSyscalls  int64 // both children, run with no messages
	PerMessage        float64
	QueueEvents       uint64 // sleeps + wake-ups (queue Stats), streaming run
	BaselineEvents    uint64 // the same in the baseline run
	EventsPerMessage  float64
	MsgsPerSec        float64 // throughput while counted
	Top               []syscallCount
	BaselineTop       []syscallCount
	SleepsAndWakeups  [4]uint64 // consumer sleeps, producer sleeps, consumer wake-ups, producer wake-ups
	BaselineBreakdown [4]uint64
}

// probeTool checks that tool can count the system calls of a child here.
func probeTool(ctx context.Context, tool string) error {
	dir, err := os.MkdirTemp("", "mpmcbench-probe")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "out")
	args := append(wrapArgs(tool, file), "/bin/true")
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	total, _, err := parseCounts(tool, file)
	if err != nil {
		return err
	}
	if total <= 0 {
		return fmt.Errorf("%s counted no system calls of /bin/true", tool)
	}
	return nil
}

// wrapArgs is the command prefix that runs a program under tool, writing the
// counts to file.
func wrapArgs(tool, file string) []string {
	if tool == toolPerf {
		return []string{"perf", "stat", "-e", "raw_syscalls:sys_enter", "-x", ",", "-o", file, "--"}
	}
	return []string{"strace", "-f", "-c", "-o", file, "--"}
}

// parseCounts reads a tool's output file: the total and, for strace, the
// calls per system call.
func parseCounts(tool, file string) (int64, map[string]int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	per := map[string]int64{}
	var total int64
	found := false
	for sc.Scan() {
		line := sc.Text()
		if tool == toolPerf {
			if strings.Contains(line, "raw_syscalls:sys_enter") {
				v, err := strconv.ParseInt(strings.SplitN(line, ",", 2)[0], 10, 64)
				if err != nil {
					return 0, nil, fmt.Errorf("perf output %q: %w", line, err)
				}
				total, found = v, true
			}
			continue
		}
		fs := strings.Fields(line)
		if len(fs) < 5 || fs[len(fs)-1] == "total" || fs[len(fs)-1] == "syscall" {
			continue
		}
		v, err := strconv.ParseInt(fs[3], 10, 64)
		if err != nil {
			continue
		}
		per[fs[len(fs)-1]] += v
		total += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, nil, err
	}
	if !found && tool == toolPerf {
		return 0, nil, fmt.Errorf("no count in perf output %s", file)
	}
	return total, per, nil
}

// countedRun runs the 1P/1C 64-byte queue case for dur with every child
// under tool, and returns the system calls of both children, per call name
// (strace only), and the run's outcome.
func countedRun(ctx context.Context, tool string, dur time.Duration) (int64, map[string]int64, tputOutcome, error) {
	dir, err := os.MkdirTemp("", "mpmcbench-count")
	if err != nil {
		return 0, nil, tputOutcome{}, err
	}
	defer os.RemoveAll(dir)
	var files []string
	wrap := func(role string, i int) []string {
		f := filepath.Join(dir, fmt.Sprintf("%s-%d", role, i))
		files = append(files, f)
		return wrapArgs(tool, f)
	}
	out, err := runTput(ctx, tputCase{Mech: mechQueue, Size: 64, P: 1, C: 1}, dur, wrap)
	if err != nil {
		return 0, nil, out, err
	}
	var total int64
	per := map[string]int64{}
	for _, f := range files {
		n, m, err := parseCounts(tool, f)
		if err != nil {
			return 0, nil, out, err
		}
		total += n
		for k, v := range m {
			per[k] += v
		}
	}
	return total, per, out, nil
}

// runSyscalls measures system calls per message with tool.
func runSyscalls(ctx context.Context, tool string, dur time.Duration) (syscallOutcome, error) {
	r := syscallOutcome{Tool: tool}
	base, basePer, bo, err := countedRun(ctx, tool, 0)
	if err != nil {
		return r, fmt.Errorf("baseline under %s: %w", tool, err)
	}
	n, per, o, err := countedRun(ctx, tool, dur)
	if err != nil {
		return r, fmt.Errorf("streaming under %s: %w", tool, err)
	}
	if o.Messages == 0 {
		return r, errors.New("no messages passed while counting")
	}
	ev := func(s [4]uint64) uint64 { return s[0] + s[1] + s[2] + s[3] }
	r.Messages, r.MsgsPerSec = o.Messages, o.MsgsPerSec
	r.Syscalls, r.BaselineSyscalls = n, base
	r.PerMessage = float64(n-base) / float64(o.Messages)
	r.SleepsAndWakeups = statsEvents(o)
	r.BaselineBreakdown = statsEvents(bo)
	r.QueueEvents, r.BaselineEvents = ev(r.SleepsAndWakeups), ev(r.BaselineBreakdown)
	r.EventsPerMessage = float64(int64(r.QueueEvents)-int64(r.BaselineEvents)) / float64(o.Messages)
	r.Top, r.BaselineTop = topCounts(per, 8), topCounts(basePer, 8)
	return r, nil
}

func statsEvents(o tputOutcome) [4]uint64 {
	s := o.Stats
	return [4]uint64{s.ConsumerSleeps, s.ProducerSleeps, s.ConsumerWakeups, s.ProducerWakeups}
}

// topCounts returns the n most frequent system calls.
func topCounts(m map[string]int64, n int) []syscallCount {
	var s []syscallCount
	for k, v := range m {
		s = append(s, syscallCount{k, v})
	}
	slices.SortFunc(s, func(a, b syscallCount) int {
		if a.Calls != b.Calls {
			return int(b.Calls - a.Calls)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return s[:min(n, len(s))]
}
