package main

// Child processes: the harness re-executes its own binary (or, under go test,
// the test binary) with the role in an environment variable. A child prints
// "ready" once set up, waits for one byte on stdin (the start signal), does
// its work, and prints its result as one JSON line. Every child dies with its
// parent (PR_SET_PDEATHSIG) and on its own watchdog, and the parent kills it
// on a context deadline and checks its exit status and stderr.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	roleEnv     = "MPMCBENCH_ROLE"
	argsEnv     = "MPMCBENCH_ARGS"
	watchdogEnv = "MPMCBENCH_WATCHDOG"
)

// roleFunc runs one child role; it reads its arguments from c and returns
// the result to print.
type roleFunc func(c *childIO) (any, error)

// roles maps a role name to its function; see the files that define them.
var roles = map[string]roleFunc{
	"tput-prod":  tputProducer,
	"tput-cons":  tputConsumer,
	"pp-client":  pingClient,
	"pp-server":  pingServer,
	"idle":       idleConsumer,
	"threads":    blockedThreads,
	"noop-child": func(c *childIO) (any, error) { return struct{}{}, c.ready() },
}

// isChild reports whether this process was started as a harness child.
func isChild() bool { return os.Getenv(roleEnv) != "" }

// childMain runs the role named in the environment and returns the exit
// code: 0 on success, 1 on error (reported on stderr), 3 on watchdog expiry.
func childMain() int {
	// Die with the parent, even if the parent is a perf or strace wrapper
	// that was killed. Then make sure the parent did not die already.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	role := os.Getenv(roleEnv)
	fn, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
		return 1
	}
	wd, err := time.ParseDuration(os.Getenv(watchdogEnv))
	if err != nil || wd <= 0 {
		wd = time.Minute
	}
	time.AfterFunc(wd, func() {
		fmt.Fprintf(os.Stderr, "child %s: watchdog expired after %v\n", role, wd)
		os.Exit(3)
	})
	c := &childIO{args: []byte(os.Getenv(argsEnv))}
	res, err := fn(c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		return 1
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: encode result: %v\n", role, err)
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

// decode unmarshals the child's arguments into v.
func (c *childIO) decode(v any) error {
	if err := json.Unmarshal(c.args, v); err != nil {
		return fmt.Errorf("decode args: %w", err)
	}
	return nil
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

// proc is the parent's handle on one child.
type proc struct {
	role   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *lockedBuffer
	done   bool
}

// lockedBuffer collects a child's stderr; exec writes it from its own
// goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// spawn starts a child in role with args (JSON-encoded). files become the
// child's descriptors 3, 4, ...; wrap, if not empty, is a command prefix
// (perf stat ..., strace ...) that runs the child. The child is killed when
// ctx is done, and kills itself after watchdog.
func spawn(ctx context.Context, role string, args any, files []*os.File, wrap []string, watchdog time.Duration) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	a, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	argv := append(append([]string(nil), wrap...), exe)
	if len(wrap) == 0 {
		argv = []string{exe}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role, argsEnv+"="+string(a), watchdogEnv+"="+watchdog.String())
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	p := &proc{role: role, cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	return p, nil
}

// line reads the child's next stdout line.
func (p *proc) line() (string, error) {
	s, err := p.out.ReadString('\n')
	if err != nil {
		return "", p.fail(fmt.Errorf("read stdout: %w", err))
	}
	return strings.TrimSuffix(s, "\n"), nil
}

// fail waits for the child (killing it if need be) and returns err with the
// child's exit status and stderr attached.
func (p *proc) fail(err error) error {
	p.kill()
	return fmt.Errorf("child %s: %w (%v; stderr: %q)", p.role, err, p.cmd.ProcessState, p.stderr.String())
}

// awaitReady waits for the child's "ready" line.
func (p *proc) awaitReady() error {
	s, err := p.line()
	if err != nil {
		return err
	}
	if s != "ready" {
		return p.fail(fmt.Errorf("expected ready, got %q", s))
	}
	return nil
}

// start sends the start signal.
func (p *proc) start() error {
	if _, err := p.stdin.Write([]byte{'g'}); err != nil {
		return p.fail(fmt.Errorf("send start: %w", err))
	}
	return nil
}

// finish reads the child's result into res and waits for a clean exit.
func (p *proc) finish(res any) error {
	s, err := p.line()
	if err != nil {
		return err
	}
	body, ok := strings.CutPrefix(s, "result ")
	if !ok {
		return p.fail(fmt.Errorf("expected result, got %q", s))
	}
	if err := json.Unmarshal([]byte(body), res); err != nil {
		return p.fail(fmt.Errorf("decode result: %w", err))
	}
	return p.wait()
}

// wait waits for the child to exit and checks its status.
func (p *proc) wait() error {
	if p.done {
		return nil
	}
	p.done = true
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("child %s: %w (stderr: %q)", p.role, err, p.stderr.String())
	}
	return nil
}

// kill ends the child if it is still running and reaps it.
func (p *proc) kill() {
	if p.done {
		return
	}
	p.done = true
	p.stdin.Close()
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	p.cmd.Wait()
}

// group is a set of children started together.
type group []*proc

// killAll ends every child still running; it is safe after finish.
func (g group) killAll() {
	for _, p := range g {
		p.kill()
	}
}

// readyAll waits until every child is ready.
func (g group) readyAll() error {
	for _, p := range g {
		if err := p.awaitReady(); err != nil {
			return err
		}
	}
	return nil
}

// startAll sends the start signal to every child and returns the
// CLOCK_MONOTONIC time just before the first one.
func (g group) startAll() (int64, error) {
	t := nanotime()
	for _, p := range g {
		if err := p.start(); err != nil {
			return 0, err
		}
	}
	return t, nil
}
