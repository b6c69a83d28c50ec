package main

// Starting, watching and stopping child processes. Nothing here knows what a
// run is: a chaos mode can start, kill and replace children with the same
// calls.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is one child process and what it said.
type child struct {
	role string
	id   int
	cmd  *exec.Cmd

	stdin  io.WriteCloser
	stderr *tailBuffer

	readyOnce sync.Once
	ready     chan struct{} // closed when the child printed "ready"
	done      chan struct{} // closed when the child has exited and was reaped

	mu       sync.Mutex
	result   *childResult
	protoErr error // what was wrong with its stdout, if anything
	killed   bool  // we sent it SIGKILL

	// Set before done is closed.
	state   *os.ProcessState
	waitErr error
	exited  time.Time
}

// String says who a child is, for messages.
func (c *child) String() string {
	if c.cmd != nil && c.cmd.Process != nil {
		return fmt.Sprintf("%s %d (pid %d)", c.role, c.id, c.cmd.Process.Pid)
	}
	return fmt.Sprintf("%s %d", c.role, c.id)
}

// startChild re-executes exe with the hidden subcommand of role and args.
// The child gets its own process group, so that a Ctrl-C on the terminal
// reaches only the parent (which decides how to stop), and is killed by the
// kernel if the parent dies. extra become the child's descriptors 3, 4...
// exits, if not nil, receives the child once it has exited.
func startChild(exe, role string, id int, args, env []string, extra []*os.File, exits chan<- *child) (*child, error) {
	sub := cmdChildProducer
	if role == roleConsumer {
		sub = cmdChildConsumer
	}
	c := &child{
		role:   role,
		id:     id,
		stderr: &tailBuffer{},
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.cmd = exec.Command(exe, append([]string{sub, "-id", fmt.Sprint(id)}, args...)...)
	c.cmd.Env = env
	c.cmd.Stderr = c.stderr
	c.cmd.ExtraFiles = extra
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s %d: %w", role, id, err)
	}
	go c.watch(stdout, exits)
	return c, nil
}

// watch reads the child's stdout protocol, then reaps it.
func (c *child) watch(stdout io.Reader, exits chan<- *child) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "ready":
			c.readyOnce.Do(func() { close(c.ready) })
		case strings.HasPrefix(line, "result "):
			var r childResult
			err := json.Unmarshal([]byte(line[len("result "):]), &r)
			c.mu.Lock()
			if err != nil {
				c.protoErr = fmt.Errorf("unreadable result line: %v", err)
			} else {
				c.result = &r
			}
			c.mu.Unlock()
		default:
			c.mu.Lock()
			if c.protoErr == nil {
				c.protoErr = fmt.Errorf("unexpected output %q", truncate(line, 200))
			}
			c.mu.Unlock()
		}
	}
	if err := sc.Err(); err != nil {
		c.mu.Lock()
		c.protoErr = fmt.Errorf("reading its output: %v", err)
		c.mu.Unlock()
		io.Copy(io.Discard, stdout)
	}
	err := c.cmd.Wait()
	c.stdin.Close()
	c.state, c.waitErr, c.exited = c.cmd.ProcessState, err, time.Now()
	if c.state == nil {
		c.waitErr = fmt.Errorf("wait: %w", err)
	}
	close(c.done)
	if exits != nil {
		exits <- c
	}
}

// signalGo tells a ready child to start.
func (c *child) signalGo() error {
	_, err := c.stdin.Write([]byte{'g'})
	return err
}

// kill sends SIGKILL (once the child has exited, it does nothing).
func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	c.cmd.Process.Kill()
}

// wasKilled reports whether kill was called while the child ran.
func (c *child) wasKilled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killed
}

// exitedOK reports whether the child exited with status 0 after reporting a
// result.
func (c *child) exitedOK() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != nil && c.state.Success() && c.result != nil && c.protoErr == nil
}

// problem classifies a child that did not exit cleanly: fail is true when
// the child says the queue misbehaved (exit status 1), false when it could
// not run or died.
func (c *child) problem() (fail bool, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var what string
	switch {
	case c.state == nil:
		what = fmt.Sprintf("could not be waited for: %v", c.waitErr)
	case c.killed && !c.state.Exited():
		what = "was killed by the stress tester"
	case !c.state.Exited():
		what = fmt.Sprintf("died: %v", c.state)
	case c.state.ExitCode() == exitFail:
		fail = true
		what = "reported a queue error (exit status 1)"
	case c.state.ExitCode() != 0:
		what = fmt.Sprintf("failed with exit status %d", c.state.ExitCode())
	case c.protoErr != nil:
		what = fmt.Sprintf("exited 0 but %v", c.protoErr)
	case c.result == nil:
		what = "exited 0 without reporting a result"
	default:
		return false, ""
	}
	msg = fmt.Sprintf("%v %s", c, what)
	if s := strings.TrimSpace(c.stderr.String()); s != "" {
		msg += ": " + firstLine(s)
	}
	return fail, msg
}

// cpu returns the child's user and system CPU time (zero before it exits).
func (c *child) cpu() (user, sys time.Duration) {
	if c.state == nil {
		return 0, 0
	}
	return c.state.UserTime(), c.state.SystemTime()
}

func (c *child) getResult() *childResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.result
}

// tailBuffer keeps the first and the last few kilobytes written to it: the
// start of a child's error output and the end of a panic's trace.
type tailBuffer struct {
	mu      sync.Mutex
	head    bytes.Buffer
	tail    []byte
	dropped int64
}

const tailKeep = 8 << 10

// Write implements io.Writer.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := tailKeep - b.head.Len(); room > 0 {
		k := min(room, len(p))
		b.head.Write(p[:k])
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - tailKeep; over > 0 {
		b.dropped += int64(over)
		b.tail = append(b.tail[:0], b.tail[over:]...)
	}
	return n, nil
}

// String returns what was kept.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("%s\n... (%d bytes dropped) ...\n%s", b.head.String(), b.dropped, b.tail)
	}
	return b.head.String() + string(b.tail)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (...)"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// errNotReady is returned by waitReady when a child exits before it is ready.
var errNotReady = errors.New("exited before it was ready")

// waitReady waits until every child is ready, one exits first, or timeout.
func waitReady(children []*child, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, c := range children {
		select {
		case <-c.ready:
		case <-c.done:
			select {
			case <-c.ready:
				continue
			default:
			}
			return fmt.Errorf("%v %w", c, errNotReady)
		case <-deadline.C:
			return fmt.Errorf("%v was not ready after %v", c, timeout)
		}
	}
	return nil
}
