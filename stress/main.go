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
// or "ERROR: ...", and exits 0, 1 or 2 accordingly; with -json, every
// command prints its report, verdict included, as one JSON document
// instead. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strings"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/message"
	"github.com/shmq/mpmc/stress/internal/proc"
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

// command is one of stress's commands.
type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

// commands are the commands `stress -h` lists, in its order. run is the
// default.
var commands = []command{
	{"run", "(default) create a fresh queue, start -producers and -consumers\nprocesses, send -messages (or run for -duration), shut down, verify\nexactly-once delivery and report", runCmd},
	{"produce", "produce into the queue at -path (created if missing)", produceCmd},
	{"consume", "consume from the queue at -path (created if missing) until it is\nshut down, or -messages / -duration / Ctrl-C", consumeCmd},
	{"create", "create an empty queue segment at -path", createCmd},
	{"shutdown", "shut down the queue at -path: producers stop, consumers drain it", shutdownCmd},
	{"inspect", "print the header, positions, waiters, participants and counters\nof the segment at -path, without joining it", inspectCmd},
	{"chaos", "run producers and consumers for -duration while random ones are\nSIGKILLed every -kill-every and replaced; verify that the queue\nnever wedges and loses nothing the kills do not explain", chaosCmd},
	{"clean", "remove the queue segments in -dir (/dev/shm) that no live\nprocess uses; -n only lists them", cleanCmd},
}

// writeUsage lists the commands.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, "usage: stress [command] [flags]\n\ncommands:\n")
	for _, c := range commands {
		for i, line := range strings.Split(c.summary, "\n") {
			name := ""
			if i == 0 {
				name = c.name
			}
			fmt.Fprintf(w, "  %-10s %s\n", name, line)
		}
	}
	fmt.Fprint(w, `
"stress COMMAND -h" lists a command's flags; every command takes -json, which
prints its report, verdict included, as one JSON document. The last line of
every command is its verdict: "OK: ..." (exit 0), "FAIL: ..." (exit 1) or
"ERROR: ..." (exit 2).
`)
}

// Exit statuses of the stress command (and of its children).
const (
	exitOK    = proc.ExitOK
	exitFail  = proc.ExitFail
	exitError = proc.ExitError
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command named by args[0] (run if none) and returns the
// exit status.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		switch {
		case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
			writeUsage(stdout)
			return exitOK
		}
		return runCmd(args, stdout, stderr)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case proc.Command:
		return childMain(args)
	case "help":
		writeUsage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == cmd {
			return c.run(args, stdout, stderr)
		}
	}
	writeUsage(stderr)
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

// fleetConfig is what `stress run` and `stress chaos` both ask for: the
// children, the queue they share, the payloads and the bound on the whole
// run.
type fleetConfig struct {
	Producers int           `json:"producers"`
	Consumers int           `json:"consumers"`
	Size      int           `json:"size"`
	Capacity  int           `json:"capacity"`
	Path      string        `json:"path"`
	Seed      uint64        `json:"seed"`
	Timeout   time.Duration `json:"timeout_ns"`

	json bool
}

// fleetFlags defines the flags of fleetConfig on fs; timeout says what
// -timeout 0 means, what the seed seeds.
func fleetFlags(fs *flag.FlagSet, c *fleetConfig, producers, consumers, seeds, timeout string) {
	fs.IntVar(&c.Producers, "producers", defaultProducers, producers)
	fs.IntVar(&c.Consumers, "consumers", defaultConsumers, consumers)
	fs.IntVar(&c.Size, "size", defaultSize, fmt.Sprintf("total message size in bytes, header (%d bytes) included; also the queue's slot size", message.HeaderSize))
	fs.IntVar(&c.Capacity, "capacity", defaultCapacity, "queue capacity in messages (power of two)")
	fs.StringVar(&c.Path, "path", "", "segment to create (must not exist; default: a unique name under /dev/shm); removed at the end")
	fs.Uint64Var(&c.Seed, "seed", defaultSeed, seeds)
	fs.DurationVar(&c.Timeout, "timeout", 0, "kill everything and fail if the run takes longer (0: "+timeout+")")
	fs.BoolVar(&c.json, "json", false, "print the whole report as JSON")
}

// check validates the fleet: the children fit the participants table, the
// command's own checks pass, and the geometry is one the stress tester can
// create.
func (c fleetConfig) check(own func() error) error {
	switch {
	case c.Producers < 1 || c.Consumers < 1:
		return fmt.Errorf("-producers and -consumers must be at least 1")
	case c.Producers+c.Consumers > maxChildren:
		return fmt.Errorf("-producers + -consumers is %d, at most %d fit the queue's participants table", c.Producers+c.Consumers, maxChildren)
	}
	if err := own(); err != nil {
		return err
	}
	return checkGeometry(c.Size, c.Capacity)
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg runConfig
	fleetFlags(fs, &cfg.fleetConfig, "number of producer processes", "number of consumer processes", "seed of the message payloads", "2m + 2x -duration + 20us per message")
	fs.Uint64Var(&cfg.Messages, "messages", defaultMessages, "messages to send in all, split among producers (0 with -duration: no limit)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "shut the queue down after this long (0: when every message is sent); alone, it lifts the -messages default")
	fs.DurationVar(&cfg.Spin, "spin", mpmc.DefaultSpin, "spin budget of every child before it sleeps on the futex (0: sleep at once, negative: never sleep)")
	fs.StringVar(&cfg.Backing, "backing", harness.BackingFile, "segment kind: file (under /dev/shm), memfd (anonymous, handed to each child over a unix socket) or sysv (System V, opened by key)")
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
	out := output{stdout, cfg.json}
	err := cfg.check(func() error {
		switch {
		case cfg.Duration < 0 || cfg.Timeout < 0:
			return fmt.Errorf("-duration and -timeout must not be negative")
		case cfg.Messages == 0 && cfg.Duration == 0:
			return fmt.Errorf("nothing to do: give -messages > 0 or a -duration")
		case cfg.Messages/uint64(cfg.Producers) >= 1<<62:
			return fmt.Errorf("-messages %d is too large", cfg.Messages)
		case cfg.Backing != harness.BackingFile && flagSet(fs, "path"):
			return fmt.Errorf("-path names a file segment; -backing %s makes its own", cfg.Backing)
		}
		return harness.CheckBacking(cfg.Backing)
	})
	if err != nil {
		return out.error(harness.CauseUsage, "run: %v", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = autoTimeout(cfg)
	}
	cfg.progress = !cfg.json && isTerminal(stdout)
	rep := runStress(cfg)
	rep.WriteChildStderr(stderr)
	return out.end(rep)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func chaosCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var cfg chaosConfig
	fleetFlags(fs, &cfg.fleetConfig, "producer processes running at any time", "consumer processes running at any time", "seed of the message payloads and of the kill schedule", "-duration + 1m30s")
	fs.DurationVar(&cfg.Duration, "duration", defaultChaosDuration, "how long the kills go on; then the queue is shut down and drained")
	fs.DurationVar(&cfg.KillEvery, "kill-every", defaultKillEvery, "mean time between two kills (each interval is drawn within +-50%)")
	fs.BoolVar(&cfg.Redeliver, "redeliver", false, "create the queue with Config.Redeliver: a killed consumer's taken message is enqueued again")
	fs.DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", mpmc.DefaultRecoveryTimeout, "passed to every child's SetRecoveryTimeout: how long a claim may hold others up before its owner's liveness is checked")
	fs.DurationVar(&cfg.RespawnDelay, "respawn-delay", 0, "start the replacement of a killed child this long after the kill (0: at once); a delay longer than the recovery timeout leaves recovery to the survivors' stall checks instead of the newcomer's sweep in Open")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: stress chaos [flags]\n\nRuns producer and consumer processes against a fresh queue while random ones\nare SIGKILLed and replaced, then verifies that the queue never wedged and lost,\nduplicated or reordered nothing the kills do not explain. Flags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	out := output{stdout, cfg.json}
	err := cfg.check(func() error {
		switch {
		case cfg.Duration <= 0:
			return fmt.Errorf("-duration must be positive")
		case cfg.KillEvery < minKillEvery:
			return fmt.Errorf("-kill-every %v: at least %v (processes take milliseconds to start)", cfg.KillEvery, minKillEvery)
		case cfg.RecoveryTimeout < 0 || cfg.Timeout < 0 || cfg.RespawnDelay < 0:
			return fmt.Errorf("-recovery-timeout, -respawn-delay and -timeout must not be negative")
		}
		return nil
	})
	if err != nil {
		return out.error(harness.CauseUsage, "chaos: %v", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = autoChaosTimeout(cfg)
	}
	rep := runChaos(cfg)
	rep.WriteChildStderr(stderr)
	return out.end(rep)
}
