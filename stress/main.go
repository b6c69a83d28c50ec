// Command stress is the multi-process stress tester of the shared-memory
// MPMC queue github.com/shmq/mpmc.
//
//	stress [run] [flags]          create a queue, run producer and consumer
//	                              processes against it, verify exactly-once
//	                              delivery and report (the default command)
//	stress produce -path P        produce into a queue from this terminal
//	stress consume -path P        consume from a queue in this terminal
//	stress create -path P         create an empty queue segment
//	stress shutdown -path P       shut a queue down for every process
//	stress inspect -path P        print a segment's header, counters, participants
//	stress chaos [flags]          run producers and consumers while random ones
//	                              are SIGKILLed and replaced; verify recovery
//	stress clean [-dir D] [-n]    remove queue segments nobody uses
//
// Every command ends with one verdict line on stdout, "OK: ...", "FAIL: ..."
// or "ERROR: ...", and exits 0, 1 or 2 accordingly. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"os"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/message"
	"golang.org/x/term"
)

// Defaults of `stress run`: a representative run, about 8-13 s on a 2-vCPU
// VM (1.5-2.6 million messages per second there).
const (
	defaultProducers = 4
	defaultConsumers = 4
	defaultMessages  = 20_000_000
	defaultSize      = 64
	defaultCapacity  = 1024
	defaultSeed      = 1

	// maxChildren keeps producers + consumers + the parent within the
	// queue's participants table (128 entries).
	maxChildren = 120
	// maxSize bounds -size: one message per slot, copied in and out.
	maxSize = 16 << 20
)

const usage = `usage: stress [command] [flags]

commands:
  run        (default) create a fresh queue, start -producers and -consumers
             processes, send -messages (or run for -duration), shut down,
             verify exactly-once delivery and report
  produce    produce into the queue at -path (created if missing)
  consume    consume from the queue at -path (created if missing) until it is
             shut down, or -messages / -duration / Ctrl-C
  create     create an empty queue segment at -path
  shutdown   shut down the queue at -path: producers stop, consumers drain it
  inspect    print the header, positions, waiters, participants and counters
             of the segment at -path, without joining it
  chaos      run producers and consumers for -duration while random ones are
             SIGKILLed every -kill-every and replaced; verify that the queue
             never wedges and loses nothing the kills do not explain
  clean      remove the queue segments in -dir (/dev/shm) that no live
             process uses; -n only lists them

"stress COMMAND -h" lists a command's flags. The last line of every command is
its verdict: "OK: ..." (exit 0), "FAIL: ..." (exit 1) or "ERROR: ..." (exit 2).
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command named by args[0] (run if none) and returns the
// exit status.
func dispatch(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCmd(args, stdout, stderr)
	case "produce":
		return produceCmd(args, stdout, stderr)
	case "consume":
		return consumeCmd(args, stdout, stderr)
	case "create":
		return createCmd(args, stdout, stderr)
	case "shutdown":
		return shutdownCmd(args, stdout, stderr)
	case "inspect":
		return inspectCmd(args, stdout, stderr)
	case "chaos":
		return chaosCmd(args, stdout, stderr)
	case "clean":
		return cleanCmd(args, stdout, stderr)
	case cmdChildProducer:
		return childMain(roleProducer, args)
	case cmdChildConsumer:
		return childMain(roleConsumer, args)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprint(stderr, usage)
	fmt.Fprintf(stdout, "ERROR: unknown command %q\n", cmd)
	return exitError
}

// parseFlags parses args into fs. It returns -1 when the command may go on,
// otherwise the exit status to return (after printing the verdict).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stdout, "ERROR: %s: %v\n", fs.Name(), err)
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdout, "ERROR: %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitError
	}
	return -1
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkGeometry validates -size and -capacity for a queue the stress tester
// creates.
func checkGeometry(size, capacity int) error {
	if size < message.HeaderSize || size > maxSize {
		return fmt.Errorf("-size %d: a message is a %d-byte header plus payload, so -size must be in [%d, %d]", size, message.HeaderSize, message.HeaderSize, maxSize)
	}
	if capacity < 2 || capacity > 1<<30 || bits.OnesCount(uint(capacity)) != 1 {
		return fmt.Errorf("-capacity %d: must be a power of two in [2, 2^30]", capacity)
	}
	return nil
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg runConfig
	fs.IntVar(&cfg.Producers, "producers", defaultProducers, "number of producer processes")
	fs.IntVar(&cfg.Consumers, "consumers", defaultConsumers, "number of consumer processes")
	fs.Uint64Var(&cfg.Messages, "messages", defaultMessages, "messages to send in all, split among producers (0 with -duration: no limit)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "shut the queue down after this long (0: when every message is sent); alone, it lifts the -messages default")
	fs.IntVar(&cfg.Size, "size", defaultSize, fmt.Sprintf("total message size in bytes, header (%d bytes) included; also the queue's slot size", message.HeaderSize))
	fs.IntVar(&cfg.Capacity, "capacity", defaultCapacity, "queue capacity in messages (power of two)")
	fs.StringVar(&cfg.Path, "path", "", "segment to create (must not exist; default: a unique name under /dev/shm); removed at the end")
	fs.BoolVar(&cfg.json, "json", false, "print the whole report as JSON")
	fs.Uint64Var(&cfg.Seed, "seed", defaultSeed, "seed of the message payloads")
	fs.DurationVar(&cfg.Spin, "spin", mpmc.DefaultSpin, "spin budget of every child before it sleeps on the futex (0: sleep at once, negative: never sleep)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "kill everything and fail if the run takes longer (0: 2m + 2x -duration + 20us per message)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: stress run [flags]\n\nRuns producer and consumer processes against a fresh queue and verifies\nexactly-once delivery. Flags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if cfg.Duration > 0 && !flagSet(fs, "messages") {
		cfg.Messages = 0
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stdout, "ERROR: run: "+format+"\n", a...)
		return exitError
	}
	switch {
	case cfg.Producers < 1 || cfg.Consumers < 1:
		return bad("-producers and -consumers must be at least 1")
	case cfg.Producers+cfg.Consumers > maxChildren:
		return bad("-producers + -consumers is %d, at most %d fit the queue's participants table", cfg.Producers+cfg.Consumers, maxChildren)
	case cfg.Duration < 0 || cfg.Timeout < 0:
		return bad("-duration and -timeout must not be negative")
	case cfg.Messages == 0 && cfg.Duration == 0:
		return bad("nothing to do: give -messages > 0 or a -duration")
	case cfg.Messages/uint64(cfg.Producers) >= 1<<62:
		return bad("-messages %d is too large", cfg.Messages)
	}
	if err := checkGeometry(cfg.Size, cfg.Capacity); err != nil {
		return bad("%v", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = autoTimeout(cfg)
	}
	cfg.progress = !cfg.json && isTerminal(stdout)
	rep := runStress(cfg)
	rep.WriteChildStderr(stderr)
	if cfg.json {
		if err := rep.WriteJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "writing the report: %v\n", err)
		}
	} else {
		rep.WriteText(stdout)
	}
	return rep.ExitCode
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func chaosCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var cfg chaosConfig
	fs.IntVar(&cfg.Producers, "producers", defaultProducers, "producer processes running at any time")
	fs.IntVar(&cfg.Consumers, "consumers", defaultConsumers, "consumer processes running at any time")
	fs.DurationVar(&cfg.Duration, "duration", defaultChaosDuration, "how long the kills go on; then the queue is shut down and drained")
	fs.DurationVar(&cfg.KillEvery, "kill-every", defaultKillEvery, "mean time between two kills (each interval is drawn within +-50%)")
	fs.IntVar(&cfg.Size, "size", defaultSize, fmt.Sprintf("total message size in bytes, header (%d bytes) included; also the queue's slot size", message.HeaderSize))
	fs.IntVar(&cfg.Capacity, "capacity", defaultCapacity, "queue capacity in messages (power of two)")
	fs.BoolVar(&cfg.Redeliver, "redeliver", false, "create the queue with Config.Redeliver: a killed consumer's taken message is enqueued again")
	fs.DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", mpmc.DefaultRecoveryTimeout, "passed to every child's SetRecoveryTimeout: how long a claim may hold others up before its owner's liveness is checked")
	fs.DurationVar(&cfg.RespawnDelay, "respawn-delay", 0, "start the replacement of a killed child this long after the kill (0: at once); a delay longer than the recovery timeout leaves recovery to the survivors' stall checks instead of the newcomer's sweep in Open")
	fs.Uint64Var(&cfg.Seed, "seed", defaultSeed, "seed of the message payloads and of the kill schedule")
	fs.StringVar(&cfg.Path, "path", "", "segment to create (must not exist; default: a unique name under /dev/shm); removed at the end")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "kill everything and fail if the run takes longer (0: -duration + 1m30s)")
	fs.BoolVar(&cfg.json, "json", false, "print the whole report as JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: stress chaos [flags]\n\nRuns producer and consumer processes against a fresh queue while random ones\nare SIGKILLed and replaced, then verifies that the queue never wedged and lost,\nduplicated or reordered nothing the kills do not explain. Flags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stdout, "ERROR: chaos: "+format+"\n", a...)
		return exitError
	}
	switch {
	case cfg.Producers < 1 || cfg.Consumers < 1:
		return bad("-producers and -consumers must be at least 1")
	case cfg.Producers+cfg.Consumers > maxChildren:
		return bad("-producers + -consumers is %d, at most %d fit the queue's participants table", cfg.Producers+cfg.Consumers, maxChildren)
	case cfg.Duration <= 0:
		return bad("-duration must be positive")
	case cfg.KillEvery < minKillEvery:
		return bad("-kill-every %v: at least %v (processes take milliseconds to start)", cfg.KillEvery, minKillEvery)
	case cfg.RecoveryTimeout < 0 || cfg.Timeout < 0 || cfg.RespawnDelay < 0:
		return bad("-recovery-timeout, -respawn-delay and -timeout must not be negative")
	}
	if err := checkGeometry(cfg.Size, cfg.Capacity); err != nil {
		return bad("%v", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = autoChaosTimeout(cfg)
	}
	rep := runChaos(cfg)
	rep.WriteChildStderr(stderr)
	if cfg.json {
		if err := rep.WriteJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "writing the report: %v\n", err)
		}
	} else {
		rep.WriteText(stdout)
	}
	return rep.ExitCode
}
