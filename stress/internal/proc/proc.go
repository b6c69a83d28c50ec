// Package proc is the stress tester's re-execute-myself-as-a-child pattern,
// both sides of it, in one place.
//
// The parent starts a child by re-executing its own binary (os.Executable)
// with one hidden command line, always of the same shape:
//
//	stress __child ROLE -id N [flags of the role]
//
// main dispatches Command to one function, which reads the role with
// ParseCommandLine and runs it. Protocol with the parent, on the child's
// standard streams:
//
//	stdout: "ready\n" once the queue is open (SignalReady), then, when the
//	        loop ends, "result <JSON Result>\n" (WriteResult).
//	fd 3:   (ExtraFd) what the parent passed in Spec.Extra: a consumer's
//	        records pipe, or the child's chaoslog under `stress chaos`.
//	stdin:  the parent writes "g" when every child is ready (SignalGo); EOF
//	        before that means the parent gave up, and the child exits
//	        (AwaitGo).
//	stderr: free text, captured by the parent and surfaced in its report.
//
// Exit status (the stress command's own too): ExitOK the loop ended normally
// and the result was written; ExitFail the queue misbehaved (an error other
// than the expected ones); ExitError setup failed (bad flags, queue not
// openable, records file). SIGTERM or SIGINT makes the loop stop early and
// still report.
package proc

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Command is the hidden command that runs a child.
const Command = "__child"

// Role is what a child does.
type Role string

// The roles of children.
const (
	Producer Role = "producer"
	Consumer Role = "consumer"
)

// ExtraFd is the descriptor of the first of Spec.Extra in the child.
const ExtraFd = 3

// Exit statuses of children and of the stress command itself.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitError = 2
)

// TestExitEnv, used by tests only, makes one child die abruptly:
// "role:id:n" exits with status 3 after n messages, without a result.
const TestExitEnv = "MPMC_STRESS_TEST_EXIT"

// The lines and bytes of the protocol.
const (
	readyLine    = "ready"
	resultPrefix = "result "
	goByte       = 'g'
)

// CommandLine is the argument list (after the binary) that runs a child of
// role with id and the role's flags.
func CommandLine(role Role, id int, args []string) []string {
	return append([]string{Command, string(role), "-id", strconv.Itoa(id)}, args...)
}

// ParseCommandLine reads the role from the arguments that follow Command,
// and returns it with the role's flags.
func ParseCommandLine(args []string) (Role, []string, error) {
	if len(args) == 0 {
		return "", nil, fmt.Errorf("%s: no role", Command)
	}
	switch r := Role(args[0]); r {
	case Producer, Consumer:
		return r, args[1:], nil
	}
	return "", nil, fmt.Errorf("%s: unknown role %q", Command, args[0])
}

// Result is what a child reports on its last stdout line.
type Result struct {
	Role           Role                   `json:"role"`
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

// StopContext is the context of a child's loop: cancelled by SIGTERM or
// SIGINT, which make the loop stop early and still report.
func StopContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// SignalReady tells the parent that the child is ready (the queue is open).
func SignalReady(stdout io.Writer) error {
	_, err := fmt.Fprintln(stdout, readyLine)
	return err
}

// AwaitGo waits for the parent's go signal.
func AwaitGo(stdin io.Reader) error {
	var g [1]byte
	if n, _ := io.ReadFull(stdin, g[:]); n != 1 || g[0] != goByte {
		return fmt.Errorf("parent gave no go signal")
	}
	return nil
}

// WriteResult writes the result line, the child's last words on stdout.
// Trailing zero counts of the latency histogram are dropped (Import
// restores them): it keeps the line short.
func WriteResult(stdout io.Writer, res Result) error {
	if s := res.Latency; s != nil {
		n := len(s.Counts)
		for n > 0 && s.Counts[n-1] == 0 {
			n--
		}
		s.Counts = s.Counts[:n]
	}
	out := bufio.NewWriter(stdout)
	out.WriteString(resultPrefix)
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return err
	}
	return out.Flush()
}

// TestExitHook returns, when TestExitEnv names this child, a hook that
// exits abruptly after the given number of messages; otherwise nil.
func TestExitHook(role Role, id int) func(uint64) {
	parts := strings.Split(os.Getenv(TestExitEnv), ":")
	if len(parts) != 3 || parts[0] != string(role) || parts[1] != strconv.Itoa(id) {
		return nil
	}
	n, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return nil
	}
	return func(done uint64) {
		if done >= n {
			fmt.Fprintf(os.Stderr, "%s %d: dying on purpose after %d messages (%s)\n", role, id, done, TestExitEnv)
			os.Exit(3)
		}
	}
}
