package main

// Child processes, the child's side. The harness re-executes its own binary
// (or, under go test, the test binary: TestMain dispatches the same way) with
// a role name, its JSON arguments and a watchdog in the environment. Every
// child follows one protocol:
//
//  1. set up (open the mechanism), then print "ready" and wait for one byte
//     on stdin, the start signal (childIO.ready);
//  2. do its work;
//  3. print "result <JSON>" and exit 0; on error, print it on stderr and
//     exit 1; on watchdog expiry exit 3.
//
// A role is declared once, with newRole, next to the code it measures; the
// parent starts it through the same value (role.spawn, or role.run for a
// lone child), so the arguments' type is checked at compile time on both
// sides. The parent's side is in proc.go.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

const (
	roleEnv     = "MPMCBENCH_ROLE"
	argsEnv     = "MPMCBENCH_ARGS"
	watchdogEnv = "MPMCBENCH_WATCHDOG"
)

// roleBodies maps a role name to its body; filled by newRole.
var roleBodies = map[string]func(c *childIO) (any, error){}

// role is a child role whose arguments are of type A.
type role[A any] struct{ name string }

// newRole declares the child role name: body runs in the child with the
// arguments the parent passed to spawn or run, and returns the result.
func newRole[A any](name string, body func(c *childIO, a A) (any, error)) role[A] {
	if _, dup := roleBodies[name]; dup {
		panic("child role declared twice: " + name)
	}
	roleBodies[name] = func(c *childIO) (any, error) {
		var a A
		if err := json.Unmarshal(c.args, &a); err != nil {
			return nil, fmt.Errorf("decode args: %w", err)
		}
		return body(c, a)
	}
	return role[A]{name}
}

// noopRole is a child that only says ready (for the tests).
var noopRole = newRole("noop", func(c *childIO, _ struct{}) (any, error) { return struct{}{}, c.ready() })

// isChild reports whether this process was started as a harness child.
func isChild() bool { return os.Getenv(roleEnv) != "" }

// childMain runs the role named in the environment and returns the exit
// code: 0 on success, 1 on error (reported on stderr), 3 on watchdog expiry.
func childMain() int {
	// Die with the parent, even if the parent is a perf or strace wrapper
	// that was killed.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	name := os.Getenv(roleEnv)
	body, ok := roleBodies[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", name)
		return 1
	}
	wd, err := time.ParseDuration(os.Getenv(watchdogEnv))
	if err != nil || wd <= 0 {
		wd = time.Minute
	}
	time.AfterFunc(wd, func() {
		fmt.Fprintf(os.Stderr, "child %s: watchdog expired after %v\n", name, wd)
		os.Exit(3)
	})
	res, err := body(&childIO{args: []byte(os.Getenv(argsEnv))})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", name, err)
		return 1
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: encode result: %v\n", name, err)
		return 1
	}
	if _, err := fmt.Fprintf(os.Stdout, "result %s\n", b); err != nil {
		return 1
	}
	return 0
}

// childIO is a child's side of the protocol.
type childIO struct {
	args []byte
}

// openReady opens what the child works on, then says ready and waits for
// the start signal; if that fails, it closes what it opened, otherwise the
// caller does.
func openReady[T any](c *childIO, open func() (T, error), close func(T)) (T, error) {
	v, err := open()
	if err != nil {
		return v, err
	}
	if err := c.ready(); err != nil {
		close(v)
		var none T
		return none, err
	}
	return v, nil
}

// openQueueReady is openReady for the queue at path.
func (c *childIO) openQueueReady(path string) (*mpmc.Queue, error) {
	return openReady(c, func() (*mpmc.Queue, error) { return mpmc.Open(path) }, func(q *mpmc.Queue) { q.Close() })
}

// ready tells the parent the child is set up and waits for the start signal.
func (c *childIO) ready() error {
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(os.Stdin, b[:]); err != nil {
		return fmt.Errorf("wait for start signal: %w", err)
	}
	return nil
}
