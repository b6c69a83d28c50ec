package main

// The child side of `stress run` and `stress chaos`: one process per
// producer or consumer, re-executing the stress binary itself as
//
//	stress __child ROLE -id N -path P [-size S] [-seed X] [-spin D] [-count C] [-log] [-recovery-timeout D]
//
// (package proc has the protocol with the parent, both sides). childMain is
// the one place that dispatches on the role.
//
// What fd 3 (proc.ExtraFd) is depends on the run: under `stress run`, a
// consumer's records pipe (see verify.Writer), closed when its loop ends,
// and nothing for a producer; with -log (the children of `stress chaos`),
// the child's chaoslog, for producers and consumers alike: a producer
// records there how many messages were acknowledged, a consumer each
// message received, in shared memory that survives a SIGKILL.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/chaoslog"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/proc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// childFlags are the flags of a child.
type childFlags struct {
	path     string
	id       int
	count    uint64
	size     int
	seed     uint64
	spin     time.Duration
	useLog   bool
	recovery time.Duration
}

// childJob is a child's role, set up: its loop, then what it does once the
// loop ended well (flush and close its records, add to its result).
type childJob struct {
	loop   func(ctx context.Context) (loopStats, error)
	finish func(res *proc.Result) error
}

// childMain runs the child whose role and flags follow proc.Command, and
// returns its exit status.
func childMain(args []string) int {
	role, args, err := proc.ParseCommandLine(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return proc.ExitError
	}
	var f childFlags
	fs := flag.NewFlagSet(string(role), flag.ContinueOnError)
	fs.StringVar(&f.path, "path", "", "queue segment")
	fs.IntVar(&f.id, "id", 0, "producer or consumer id")
	fs.Uint64Var(&f.count, "count", 0, "messages to send (producer; 0 = until shutdown)")
	fs.IntVar(&f.size, "size", 64, "message size in bytes")
	fs.Uint64Var(&f.seed, "seed", 1, "payload seed")
	fs.DurationVar(&f.spin, "spin", mpmc.DefaultSpin, "spin budget before sleeping")
	fs.BoolVar(&f.useLog, "log", false, "record into the chaoslog on fd 3 (stress chaos)")
	fs.DurationVar(&f.recovery, "recovery-timeout", mpmc.DefaultRecoveryTimeout, "passed to SetRecoveryTimeout")
	if err := fs.Parse(args); err != nil {
		return proc.ExitError
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "%s %d: "+format+"\n", append([]any{role, f.id}, a...)...)
		return code
	}
	q, err := harness.OpenQueue(f.path) // a file, unix:N (memfd over a socket) or sysv:0xKEY
	if err != nil {
		return fail(proc.ExitError, "%v", err)
	}
	defer q.Close()
	q.SetSpin(f.spin)
	q.SetRecoveryTimeout(f.recovery)
	clk := newMonoClock()
	lc := loopConfig{Clock: clk, Size: f.size, Seed: f.seed, Hook: proc.TestExitHook(role, f.id)}

	// The one dispatch on the role; each sets up where it records before
	// the child says it is ready.
	var job childJob
	var closeRecords func()
	switch role {
	case proc.Producer:
		job, closeRecords, err = producerJob(q, f, lc)
	case proc.Consumer:
		job, closeRecords, err = consumerJob(q, f, lc)
	}
	if err != nil {
		return fail(proc.ExitError, "%v", err)
	}
	defer closeRecords()

	ctx, stop := proc.StopContext()
	defer stop()
	proc.SignalReady(os.Stdout)
	if err := proc.AwaitGo(os.Stdin); err != nil {
		return fail(proc.ExitError, "%v", err)
	}
	st, err := job.loop(ctx)
	if err != nil {
		return fail(proc.ExitFail, "%v", err)
	}
	res := proc.Result{Role: role, ID: f.id, ClockError: clk.Uncertainty(),
		Messages: st.Messages, Corrupt: st.Corrupt, FirstNs: st.FirstNs, LastNs: st.LastNs,
		Stop: st.Stop, CorruptSamples: st.CorruptSamples}
	if err := job.finish(&res); err != nil {
		return fail(proc.ExitError, "%v", err)
	}
	if err := proc.WriteResult(os.Stdout, res); err != nil {
		return fail(proc.ExitError, "result: %v", err)
	}
	return proc.ExitOK
}

// producerJob sends messages 0, 1, 2... as producer id; with -log, it
// records each acknowledgement (Enqueue returned nil for sequence numbers
// 0 to n-1) in its chaoslog.
func producerJob(q *mpmc.Queue, f childFlags, lc loopConfig) (childJob, func(), error) {
	closeLog := func() {}
	if f.useLog {
		clog, err := chaoslog.Open(os.NewFile(proc.ExtraFd, "chaoslog"), chaoslog.Producer)
		if err != nil {
			return childJob{}, nil, err
		}
		closeLog = func() { clog.Close() }
		lc.Hook = chainHooks(clog.Ack, lc.Hook)
	}
	cfg := producerConfig{loopConfig: lc, ID: uint32(f.id), Count: f.count}
	return childJob{
		loop:   func(ctx context.Context) (loopStats, error) { return producerLoop(ctx, q, cfg) },
		finish: func(*proc.Result) error { return nil },
	}, closeLog, nil
}

// consumerJob dequeues until the queue is shut down and drained, and
// records every message: in its chaoslog with -log, otherwise on its
// records pipe.
func consumerJob(q *mpmc.Queue, f childFlags, lc loopConfig) (childJob, func(), error) {
	hist := newLatencyHistogram()
	cfg := consumerConfig{loopConfig: lc, Hist: hist}
	finish := func(res *proc.Result) error { res.Latency = hist.Export(); return nil }
	var closeRecords func()
	if f.useLog {
		clog, err := chaoslog.Open(os.NewFile(proc.ExtraFd, "chaoslog"), chaoslog.Consumer)
		if err != nil {
			return childJob{}, nil, err
		}
		closeRecords = func() { clog.Close() }
		cfg.Sink = func(r verify.Record) error { clog.Append(r); return nil }
	} else {
		recFile := os.NewFile(proc.ExtraFd, "records")
		if _, err := recFile.Stat(); err != nil {
			return childJob{}, nil, fmt.Errorf("no records pipe on fd %d: %v", proc.ExtraFd, err)
		}
		closeRecords = func() { recFile.Close() }
		rec := verify.NewWriter(recFile)
		cfg.Sink = rec.Write
		finish = func(res *proc.Result) error {
			if err := rec.Flush(); err != nil {
				return fmt.Errorf("records: %v", err)
			}
			if err := recFile.Close(); err != nil {
				return fmt.Errorf("records: %v", err)
			}
			res.Latency = hist.Export()
			return nil
		}
	}
	return childJob{
		loop:   func(ctx context.Context) (loopStats, error) { return consumerLoop(ctx, q, cfg) },
		finish: finish,
	}, closeRecords, nil
}

// chainHooks returns a hook that calls first, then second if not nil.
func chainHooks(first, second func(uint64)) func(uint64) {
	if second == nil {
		return first
	}
	return func(n uint64) { first(n); second(n) }
}
