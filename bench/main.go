// Command bench measures the shared-memory MPMC queue (github.com/shmq/mpmc)
// against the alternatives, in one run on one machine: in-process against a
// buffered channel, a mutex+cond ring and Workiva's RingBuffer; across
// processes against a pipe, a unix SOCK_SEQPACKET socket and POSIX message
// queues (throughput, ping-pong latency), plus the system calls per message,
// the CPU of a blocked consumer, the threads of a process with many blocked
// goroutines, and the floor of one uncontended enqueue+dequeue; and the
// field: a textbook Vyukov queue written here (refq.go) and
// cloudwego/shmipc-go. It writes RESULTS.md (from report.tmpl),
// results.json, throughput.png and pingpong.png into -out (make bench:
// results/).
//
// Usage:
//
//	go run . [-quick] [-reps 5] [-duration 1s] [-out DIR]
//
// The cases are listed in cases.go. Child processes are this binary
// re-executed; see child.go.
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
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	if err := run(o, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parseFlags parses the command line into options. With -quick the
// defaults are the quick ones, and explicit flags still win over them.
func parseFlags(args []string) (options, error) {
	o := defaultOptions()
	if err := flagSet(&o).Parse(args); err != nil {
		return o, err
	}
	if o.Quick {
		o = defaultOptions()
		o.quick()
		if err := flagSet(&o).Parse(args); err != nil {
			return o, err
		}
	}
	return o, nil
}

// flagSet binds the harness's flags to o.
func flagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.Quick, "quick", o.Quick, "fast smoke run (seconds); numbers are not meaningful")
	fs.IntVar(&o.Reps, "reps", o.Reps, "repetitions (medians are quoted)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "duration of each cross-process throughput run")
	fs.IntVar(&o.InprocMsgs, "inproc-msgs", o.InprocMsgs, "messages per in-process run")
	fs.IntVar(&o.FloorOps, "floor-ops", o.FloorOps, "enqueue+dequeue pairs per floor run")
	fs.IntVar(&o.PingSamples, "samples", o.PingSamples, "round trips per back-to-back ping-pong run")
	fs.IntVar(&o.AsleepSamples, "asleep-samples", o.AsleepSamples, "round trips per both-asleep ping-pong run")
	fs.DurationVar(&o.Gap, "gap", o.Gap, "busy gap before each send in the both-asleep ping-pong (more than the spin budget)")
	fs.DurationVar(&o.IdleFor, "idle", o.IdleFor, "how long the blocked consumer waits")
	fs.IntVar(&o.Goroutines, "goroutines", o.Goroutines, "goroutines blocked in Dequeue for the thread count")
	fs.BoolVar(&o.Strace, "strace", o.Strace, "also count system calls once under strace")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the order of measurements")
	fs.StringVar(&o.OutDir, "out", o.OutDir, "directory for RESULTS.md, results.json and the charts (make bench: results)")
	fs.StringVar(&o.Only, "only", o.Only, "run only the measurements whose task name matches this regexp (e.g. 'ping-pong|floor|shmipc')")
	fs.Func("queue-spin", "SetSpin value for the queue's throughput children (default: the library's default)", func(s string) error {
		d, err := time.ParseDuration(s)
		o.QueueSpin, o.QueueSpinSet = d, true
		return err
	})
	return fs
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
	md, err := res.markdown()
	if err != nil {
		return fmt.Errorf("RESULTS.md: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "RESULTS.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := writeCharts(res, o.OutDir); err != nil {
		return err
	}
	fmt.Fprintf(log, "wrote %s\n", filepath.Join(o.OutDir, "RESULTS.md"))
	return nil
}
