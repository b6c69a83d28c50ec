package main

// The hidden child subcommands that `stress run` starts: one process per
// producer or consumer, re-executing the stress binary itself.
//
// Protocol with the parent, on the child's standard streams:
//
//	stdout: "ready\n" once the queue is open, then, when the loop ends,
//	        "result <JSON childResult>\n".
//	fd 3:   (consumers) the records of every message received, in order
//	        (see verify.Writer), closed when the loop ends. With -log (the
//	        children of `stress chaos`), fd 3 is instead the child's
//	        chaoslog, for producers and consumers alike: a producer records
//	        there how many messages were acknowledged, a consumer each
//	        message received, in shared memory that survives a SIGKILL.
//	stdin:  the parent writes "g" when every child is ready; EOF before
//	        that means the parent gave up, and the child exits.
//	stderr: free text, captured by the parent and surfaced in its report.
//
// Exit status: 0 the loop ended normally and the result was written;
// 1 the queue misbehaved (an error other than the expected ones);
// 2 setup failed (bad flags, queue not openable, records file).
// SIGTERM or SIGINT makes the loop stop early and still report.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/chaoslog"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// Roles of children, and the hidden subcommands that run them.
const (
	roleProducer = "producer"
	roleConsumer = "consumer"

	cmdChildProducer = "__producer"
	cmdChildConsumer = "__consumer"

	// recordsFd is the descriptor on which a consumer child writes its
	// records (the first of exec.Cmd.ExtraFiles), or, with -log, where
	// every child finds its chaoslog.
	recordsFd = 3

	// testExitEnv, used by tests only, makes one child die abruptly:
	// "role:id:n" exits with status 3 after n messages, without a result.
	testExitEnv = "MPMC_STRESS_TEST_EXIT"
)

// Exit statuses of children (and of the stress command itself).
const (
	exitOK    = 0
	exitFail  = 1
	exitError = 2
)

// childResult is what a child reports on its last stdout line.
type childResult struct {
	Role           string                 `json:"role"`
	ID             int                    `json:"id"`
	Messages       uint64                 `json:"messages"`
	Corrupt        uint64                 `json:"corrupt,omitempty"`
	FirstNs        int64                  `json:"first_ns"`
	LastNs         int64                  `json:"last_ns"`
	Stop           string                 `json:"stop"`
	CorruptSamples []string               `json:"corrupt_samples,omitempty"`
	Latency        *hdrhistogram.Snapshot `json:"latency,omitempty"`
	ClockError     time.Duration          `json:"clock_error_ns"`
}

// childMain runs a hidden child subcommand and returns its exit status.
func childMain(role string, args []string) int {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	path := fs.String("path", "", "queue segment")
	id := fs.Int("id", 0, "producer or consumer id")
	count := fs.Uint64("count", 0, "messages to send (producer; 0 = until shutdown)")
	size := fs.Int("size", 64, "message size in bytes")
	seed := fs.Uint64("seed", 1, "payload seed")
	spin := fs.Duration("spin", mpmc.DefaultSpin, "spin budget before sleeping")
	useLog := fs.Bool("log", false, "record into the chaoslog on fd 3 (stress chaos)")
	recovery := fs.Duration("recovery-timeout", mpmc.DefaultRecoveryTimeout, "passed to SetRecoveryTimeout")
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "%s %d: "+format+"\n", append([]any{role, *id}, a...)...)
		return code
	}
	q, err := mpmc.Open(*path)
	if err != nil {
		return fail(exitError, "%v", err)
	}
	defer q.Close()
	q.SetSpin(*spin)
	q.SetRecoveryTimeout(*recovery)
	clk := newMonoClock()

	var rec *verify.Writer
	var recFile *os.File
	var clog *chaoslog.Log
	if *useLog {
		kind := chaoslog.Producer
		if role == roleConsumer {
			kind = chaoslog.Consumer
		}
		if clog, err = chaoslog.Open(os.NewFile(recordsFd, "chaoslog"), kind); err != nil {
			return fail(exitError, "%v", err)
		}
		defer clog.Close()
	} else if role == roleConsumer {
		recFile = os.NewFile(recordsFd, "records")
		if _, err := recFile.Stat(); err != nil {
			return fail(exitError, "no records pipe on fd %d: %v", recordsFd, err)
		}
		defer recFile.Close()
		rec = verify.NewWriter(recFile)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	fmt.Println("ready")
	var g [1]byte
	if n, _ := io.ReadFull(os.Stdin, g[:]); n != 1 || g[0] != 'g' {
		return fail(exitError, "parent gave no go signal")
	}

	hook := testExitHook(role, *id)
	var st loopStats
	res := childResult{Role: role, ID: *id, ClockError: clk.Uncertainty()}
	switch {
	case role == roleProducer:
		if clog != nil {
			// The acknowledgement: Enqueue returned nil for
			// sequence numbers 0 to n-1.
			hook = chainHooks(clog.Ack, hook)
		}
		st, err = producerLoop(ctx, q, clk, uint32(*id), *count, time.Time{}, *size, *seed, hook)
	case clog != nil:
		hist := newLatencyHistogram()
		st, err = consumerLoop(ctx, q, clk, 0, *size, *seed, hist, func(r verify.Record) error { clog.Append(r); return nil }, hook)
		res.Latency = trimSnapshot(hist.Export())
	default:
		hist := newLatencyHistogram()
		st, err = consumerLoop(ctx, q, clk, 0, *size, *seed, hist, rec.Write, hook)
		if ferr := rec.Flush(); ferr != nil && err == nil {
			return fail(exitError, "records: %v", ferr)
		}
		if cerr := recFile.Close(); cerr != nil && err == nil {
			return fail(exitError, "records: %v", cerr)
		}
		res.Latency = trimSnapshot(hist.Export())
	}
	if err != nil {
		return fail(exitFail, "%v", err)
	}
	res.Messages, res.Corrupt, res.FirstNs, res.LastNs = st.Messages, st.Corrupt, st.FirstNs, st.LastNs
	res.Stop, res.CorruptSamples = st.Stop, st.CorruptSamples
	out := bufio.NewWriter(os.Stdout)
	out.WriteString("result ")
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return fail(exitError, "result: %v", err)
	}
	if err := out.Flush(); err != nil {
		return fail(exitError, "result: %v", err)
	}
	return exitOK
}

// trimSnapshot drops the trailing zero counts of a histogram snapshot, which
// Import restores: it keeps the result line short.
func trimSnapshot(s *hdrhistogram.Snapshot) *hdrhistogram.Snapshot {
	n := len(s.Counts)
	for n > 0 && s.Counts[n-1] == 0 {
		n--
	}
	s.Counts = s.Counts[:n]
	return s
}

// chainHooks returns a hook that calls first, then second if not nil.
func chainHooks(first, second func(uint64)) func(uint64) {
	if second == nil {
		return first
	}
	return func(n uint64) { first(n); second(n) }
}

// testExitHook returns, when testExitEnv names this child, a hook that
// exits abruptly after the given number of messages.
func testExitHook(role string, id int) func(uint64) {
	v := os.Getenv(testExitEnv)
	parts := strings.Split(v, ":")
	if len(parts) != 3 || parts[0] != role || parts[1] != strconv.Itoa(id) {
		return nil
	}
	n, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return nil
	}
	return func(done uint64) {
		if done >= n {
			fmt.Fprintf(os.Stderr, "%s %d: dying on purpose after %d messages (%s)\n", role, id, done, testExitEnv)
			os.Exit(3)
		}
	}
}
