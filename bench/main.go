// Command bench measures the shared-memory MPMC queue (github.com/shmq/mpmc)
// against the alternatives, in one run on one machine: in-process against a
// buffered channel, a mutex+cond ring and Workiva's RingBuffer; across
// processes against a pipe, a unix SOCK_SEQPACKET socket and POSIX message
// queues (throughput, ping-pong latency), plus the system calls per message,
// the CPU of a blocked consumer, the threads of a process with many blocked
// goroutines, and the floor of one uncontended enqueue+dequeue. It writes
// RESULTS.md, results.json, throughput.png and pingpong.png.
//
// Usage:
//
//	go run . [-quick] [-reps 5] [-duration 1s] [-out DIR]
//
// Child processes are this binary re-executed; see child.go.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	if isChild() {
		os.Exit(childMain())
	}
	o := defaultOptions()
	quick := flag.Bool("quick", false, "fast smoke run (seconds); numbers are not meaningful")
	flag.IntVar(&o.Reps, "reps", o.Reps, "repetitions (medians are quoted)")
	flag.DurationVar(&o.Duration, "duration", o.Duration, "duration of each cross-process throughput run")
	flag.IntVar(&o.InprocMsgs, "inproc-msgs", o.InprocMsgs, "messages per in-process run")
	flag.IntVar(&o.FloorOps, "floor-ops", o.FloorOps, "enqueue+dequeue pairs per floor run")
	flag.IntVar(&o.PingSamples, "samples", o.PingSamples, "round trips per back-to-back ping-pong run")
	flag.IntVar(&o.AsleepSamples, "asleep-samples", o.AsleepSamples, "round trips per both-asleep ping-pong run")
	flag.DurationVar(&o.Gap, "gap", o.Gap, "busy gap before each send in the both-asleep ping-pong (more than the spin budget)")
	flag.DurationVar(&o.IdleFor, "idle", o.IdleFor, "how long the blocked consumer waits")
	flag.IntVar(&o.Goroutines, "goroutines", o.Goroutines, "goroutines blocked in Dequeue for the thread count")
	flag.BoolVar(&o.Strace, "strace", o.Strace, "also count system calls once under strace")
	flag.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the order of measurements")
	flag.StringVar(&o.OutDir, "out", o.OutDir, "directory for RESULTS.md, results.json and the charts")
	flag.StringVar(&o.Only, "only", "", "run only the measurements whose task name matches this regexp (e.g. 'ping-pong|floor')")
	flag.Func("queue-spin", "SetSpin value for the queue's throughput children (default: the library's default)", func(s string) error {
		d, err := time.ParseDuration(s)
		o.QueueSpin, o.QueueSpinSet = d, true
		return err
	})
	flag.Parse()
	if *quick {
		reps, dur := o.Reps, o.Duration
		o.quick()
		// Explicit flags still win over the quick settings.
		flag.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "reps":
				o.Reps = reps
			case "duration":
				o.Duration = dur
			}
		})
	}
	if err := run(o, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run measures everything and writes the outputs into o.OutDir. Every
// shared-memory file and message queue it made is removed before it
// returns, also on SIGINT or SIGTERM.
func run(o options, log io.Writer) error {
	if o.Reps < 1 {
		return fmt.Errorf("reps must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer cleanupAll()
	sweepStale()
	started := time.Now()
	r, err := measure(ctx, o, log)
	if err != nil {
		return err
	}
	res := aggregate(o, r, started)
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "RESULTS.md"), []byte(res.markdown()), 0o644); err != nil {
		return err
	}
	if err := writeCharts(res, o.OutDir); err != nil {
		return err
	}
	fmt.Fprintf(log, "wrote %s\n", filepath.Join(o.OutDir, "RESULTS.md"))
	return nil
}
