package main

// The run: every measurement of one repetition is a task; the tasks of a
// repetition run in a shuffled order, so that a noisy moment on the machine
// hits the mechanisms alike rather than always the same one, and every
// ratio is computed between samples of the same repetition.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// options are the harness's knobs (see the flags in main.go).
type options struct {
	Quick         bool
	Reps          int
	Duration      time.Duration // each cross-process throughput run
	InprocMsgs    int           // messages per in-process run
	FloorOps      int           // pairs per floor run
	PingSamples   int           // round trips per back-to-back ping-pong run
	AsleepSamples int           // round trips per both-asleep ping-pong run
	Gap           time.Duration // busy gap of the both-asleep runs
	IdleFor       time.Duration // how long the idle consumer blocks
	Goroutines    int           // goroutines blocked in the threads run
	Settle        time.Duration // how long they settle before counting
	Strace        bool          // also count once under strace
	Only          string        // if set, run only the tasks whose name matches this regexp
	QueueSpinSet  bool          // call SetSpin(QueueSpin) in the throughput children
	QueueSpin     time.Duration // spin budget of the queue's throughput children
	Seed          uint64
	OutDir        string
}

// defaultOptions are the settings of a full run (about 3 minutes here).
func defaultOptions() options {
	return options{
		Reps:          5,
		Duration:      time.Second,
		InprocMsgs:    2_000_000,
		FloorOps:      5_000_000,
		PingSamples:   20_000,
		AsleepSamples: 2_000,
		Gap:           100 * time.Microsecond,
		IdleFor:       3 * time.Second,
		Goroutines:    1000,
		Settle:        500 * time.Millisecond,
		Strace:        true,
		Seed:          1,
		OutDir:        "results",
	}
}

// quick shrinks o to a smoke run of a few seconds.
func (o *options) quick() {
	o.Quick = true
	o.Reps = 1
	o.Duration = 100 * time.Millisecond
	o.InprocMsgs = 20_000
	o.FloorOps = 100_000
	o.PingSamples = 200
	o.AsleepSamples = 20
	o.IdleFor = 200 * time.Millisecond
	o.Settle = 100 * time.Millisecond
}

// samples collects per-repetition values by key; the i-th value of every
// key comes from repetition i.
type samples map[string][]float64

func (s samples) add(key string, v float64) { s[key] = append(s[key], v) }

// raw holds everything measured, before aggregation.
type raw struct {
	s          samples
	syscalls   []syscallOutcome
	strace     *syscallOutcome
	idle       []idleOutcome
	threads    []threadsResult
	pings      map[string][]ppOutcome
	shmipc     map[string][]shmipcOutcome // by mechanism + "/stream" or "/ping"
	tputMechs  []string
	mqCapacity int
	notes      []string
	loads      []float64 // 1-minute load average before each task
}

// task is one measurement of one repetition.
type task struct {
	name string
	run  func() error
}

// measure runs every repetition and returns what was measured.
func measure(ctx context.Context, o options, log io.Writer) (*raw, error) {
	r := &raw{s: samples{}, pings: map[string][]ppOutcome{}, shmipc: map[string][]shmipcOutcome{}}
	var only *regexp.Regexp
	if o.Only != "" {
		var err error
		if only, err = regexp.Compile(o.Only); err != nil {
			return nil, fmt.Errorf("-only: %w", err)
		}
		r.notes = append(r.notes, fmt.Sprintf("partial run: only the measurements matching %q", o.Only))
	}
	if o.QueueSpinSet {
		r.notes = append(r.notes, fmt.Sprintf("the queue's throughput children ran with SetSpin(%v)", o.QueueSpin))
	}
	r.tputMechs = []string{mechQueue, mechPipe, mechUnixSock}
	if fd, granted, name, err := mqCreate(1024, queueCapacity); err != nil {
		r.notes = append(r.notes, fmt.Sprintf("POSIX message queues skipped: mq_open failed: %v", err))
	} else {
		unix.Close(fd)
		done(name)
		r.tputMechs = append(r.tputMechs, mechMQ)
		r.mqCapacity = granted
		if granted < queueCapacity {
			r.notes = append(r.notes, fmt.Sprintf("POSIX message queues hold %d messages (asked for %d; the system refused more)", granted, queueCapacity))
		}
	}
	countTool := ""
	for _, t := range []string{toolPerf, toolStrace} {
		if err := probeTool(ctx, t); err != nil {
			r.notes = append(r.notes, fmt.Sprintf("%s cannot count system calls here: %v", t, err))
			continue
		}
		if countTool == "" {
			countTool = t
		}
	}
	if countTool == "" {
		r.notes = append(r.notes, "system calls were not counted from outside: neither perf nor strace works here")
	}

	for rep := range o.Reps {
		var tasks []task
		for _, ic := range inprocCases {
			tasks = append(tasks, task{"inproc " + ic.key(), func() error {
				ns, err := runInproc(ic, o.InprocMsgs)
				r.s.add("inproc/"+ic.key(), ns)
				return err
			}})
		}
		for _, m := range floorMechs {
			tasks = append(tasks, task{"floor " + m, func() error {
				ns, err := runFloor(m, o.FloorOps)
				r.s.add("floor/"+m, ns)
				return err
			}})
		}
		for _, tc := range tputCases(r.tputMechs) {
			tc.SetSpin, tc.Spin = o.QueueSpinSet, o.QueueSpin
			tasks = append(tasks, task{"throughput " + tc.key(), func() error {
				out, err := runTput(ctx, tc, o.Duration, nil)
				r.s.add("tput/"+tc.key(), out.MsgsPerSec)
				if tc.Mech == mechQueue && out.Messages > 0 {
					s := out.Stats
					r.s.add("tputev/"+tc.key(), float64(s.ConsumerSleeps+s.ProducerSleeps+s.ConsumerWakeups+s.ProducerWakeups)/float64(out.Messages))
				}
				return err
			}})
		}
		for _, m := range shmipcMechs {
			tasks = append(tasks, task{"shmipc-go stream " + m, func() error {
				out, err := runShmipc(ctx, m, false, o.Duration, 0)
				r.s.add("shmipc/"+m+"/stream", out.MsgsPerSec)
				r.shmipc[m+"/stream"] = append(r.shmipc[m+"/stream"], out)
				return err
			}}, task{"shmipc-go ping-pong " + m, func() error {
				out, err := runShmipc(ctx, m, true, 0, o.PingSamples)
				r.s.add("shmipc/"+m+"/p50", out.Ping.P50)
				r.s.add("shmipc/"+m+"/p99", out.Ping.P99)
				r.shmipc[m+"/ping"] = append(r.shmipc[m+"/ping"], out)
				return err
			}})
		}
		for _, pc := range pingCases {
			tasks = append(tasks, task{"ping-pong " + pc.Name, func() error {
				n := o.PingSamples
				if pc.Asleep {
					n = o.AsleepSamples
				}
				out, err := runPing(ctx, pc, n, o.Gap)
				r.s.add("ping/"+pc.Name+"/p50", out.P50)
				r.s.add("ping/"+pc.Name+"/p99", out.P99)
				r.pings[pc.Name] = append(r.pings[pc.Name], out)
				return err
			}})
		}
		tasks = append(tasks, task{"blocked consumer", func() error {
			out, err := runIdle(ctx, o.IdleFor)
			r.idle = append(r.idle, out)
			r.s.add("idle/core%", out.CorePercent)
			return err
		}})
		tasks = append(tasks, task{"threads", func() error {
			out, err := runThreads(ctx, o.Goroutines, o.Settle)
			r.threads = append(r.threads, out)
			r.s.add("threads", float64(out.Blocked))
			return err
		}})
		if countTool != "" {
			tasks = append(tasks, task{"syscalls under " + countTool, func() error {
				out, err := runSyscalls(ctx, countTool, o.Duration)
				r.syscalls = append(r.syscalls, out)
				r.s.add("syscalls/per-msg", out.PerMessage)
				r.s.add("syscalls/events-per-msg", out.EventsPerMessage)
				return err
			}})
		}
		if only != nil {
			tasks = slices.DeleteFunc(tasks, func(t task) bool { return !only.MatchString(t.name) })
		}
		rng := rand.New(rand.NewPCG(o.Seed, uint64(rep)))
		rng.Shuffle(len(tasks), func(i, j int) { tasks[i], tasks[j] = tasks[j], tasks[i] })
		for i, t := range tasks {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if l, ok := loadAvg(); ok {
				r.loads = append(r.loads, l)
			}
			start := time.Now()
			if err := t.run(); err != nil {
				return nil, fmt.Errorf("rep %d, %s: %w", rep+1, t.name, err)
			}
			fmt.Fprintf(log, "rep %d/%d  task %2d/%d  %-45s %6.2fs\n", rep+1, o.Reps, i+1, len(tasks), t.name, time.Since(start).Seconds())
		}
	}
	if o.Strace && countTool != toolStrace && (only == nil || only.MatchString("syscalls under strace")) {
		if err := probeTool(ctx, toolStrace); err == nil {
			out, err := runSyscalls(ctx, toolStrace, o.Duration)
			if err != nil {
				return nil, fmt.Errorf("syscalls under strace: %w", err)
			}
			r.strace = &out
			fmt.Fprintf(log, "syscalls under strace done\n")
		}
	}
	return r, nil
}

// loadAvg returns the 1-minute load average: the machine is shared, and
// other work on it shows up in every number.
func loadAvg() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}
