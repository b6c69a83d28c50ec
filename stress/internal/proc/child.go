package proc

// The parent's side: starting, watching and stopping child processes.
// Nothing here knows what a run is: `stress run` and `stress chaos` start,
// kill and replace children with the same calls.

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

// Child is one child process and what it said.
type Child struct {
	// Role and ID name the child: its role and its producer or consumer id.
	Role Role
	ID   int

	cmd *exec.Cmd

	stdin  io.WriteCloser
	stderr *tailBuffer

	readyOnce sync.Once
	ready     chan struct{} // closed when the child printed "ready"
	done      chan struct{} // closed when the child has exited and was reaped

	mu       sync.Mutex
	result   *Result
	protoErr error // what was wrong with its stdout, if anything
	killed   bool  // we sent it SIGKILL

	// Set before done is closed.
	state   *os.ProcessState
	waitErr error
	exited  time.Time
}

// String says who a child is, for messages.
func (c *Child) String() string {
	if pid := c.Pid(); pid != 0 {
		return fmt.Sprintf("%s %d (pid %d)", c.Role, c.ID, pid)
	}
	return fmt.Sprintf("%s %d", c.Role, c.ID)
}

// Pid is the child's process id, 0 if it never started.
func (c *Child) Pid() int {
	if c.cmd != nil && c.cmd.Process != nil {
		return c.cmd.Process.Pid
	}
	return 0
}

// Spec says how to start a child.
type Spec struct {
	Exe  string   // the stress binary (os.Executable)
	Role Role     // its role, passed as Command's first argument
	ID   int      // passed as -id
	Args []string // its flags after -id
	Env  []string
	// Extra become the child's descriptors 3, 4... (ExtraFd is the first).
	Extra []*os.File
	// Exits, if not nil, receives the child once it has exited.
	Exits chan<- *Child
}

// Start re-executes the stress binary as the child that spec describes:
// Exe Command Role -id ID Args... (see CommandLine). The child gets its own
// process group, so that a Ctrl-C on the terminal reaches only the parent
// (which decides how to stop), and is killed by the kernel if the parent
// dies.
func Start(spec Spec) (*Child, error) {
	c := &Child{
		Role:   spec.Role,
		ID:     spec.ID,
		stderr: &tailBuffer{},
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.cmd = exec.Command(spec.Exe, CommandLine(spec.Role, spec.ID, spec.Args)...)
	c.cmd.Env = spec.Env
	c.cmd.Stderr = c.stderr
	c.cmd.ExtraFiles = spec.Extra
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
		return nil, fmt.Errorf("starting %s %d: %w", spec.Role, spec.ID, err)
	}
	go c.watch(stdout, spec.Exits)
	return c, nil
}

// watch reads the child's stdout protocol, then reaps it.
func (c *Child) watch(stdout io.Reader, exits chan<- *Child) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == readyLine:
			c.readyOnce.Do(func() { close(c.ready) })
		case strings.HasPrefix(line, resultPrefix):
			var r Result
			err := json.Unmarshal([]byte(line[len(resultPrefix):]), &r)
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

// Ready is closed when the child has said it is ready.
func (c *Child) Ready() <-chan struct{} { return c.ready }

// Done is closed when the child has exited and was reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Running reports whether the child has not exited yet.
func (c *Child) Running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// SignalGo tells a ready child to start.
func (c *Child) SignalGo() error {
	_, err := c.stdin.Write([]byte{goByte})
	return err
}

// Kill sends SIGKILL (once the child has exited, it does nothing).
func (c *Child) Kill() {
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

// WasKilled reports whether Kill was called while the child ran.
func (c *Child) WasKilled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killed
}

// Signaled reports whether the child has exited by a signal.
func (c *Child) Signaled() bool {
	select {
	case <-c.done:
		return c.state != nil && !c.state.Exited()
	default:
		return false
	}
}

// ExitedOK reports whether the child exited with status 0 after reporting a
// result.
func (c *Child) ExitedOK() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != nil && c.state.Success() && c.result != nil && c.protoErr == nil
}

// Outcome is how a child ended.
type Outcome string

// The outcomes of a child.
const (
	Clean      Outcome = "clean"       // exit status 0 after a result
	Killed     Outcome = "killed"      // SIGKILLed by the stress tester
	QueueError Outcome = "queue-error" // exit status 1: the queue misbehaved
	Failed     Outcome = "failed"      // could not run, died, or broke the protocol
)

// Problem classifies how the child ended, and for any outcome but Clean
// says so in words fit for a verdict line, with the first line of its
// stderr.
func (c *Child) Problem() (Outcome, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var what string
	o := Failed
	switch {
	case c.state == nil:
		what = fmt.Sprintf("could not be waited for: %v", c.waitErr)
	case c.killed && !c.state.Exited():
		o, what = Killed, "was killed by the stress tester"
	case !c.state.Exited():
		what = fmt.Sprintf("died: %v", c.state)
	case c.state.ExitCode() == ExitFail:
		o, what = QueueError, "reported a queue error (exit status 1)"
	case c.state.ExitCode() != 0:
		what = fmt.Sprintf("failed with exit status %d", c.state.ExitCode())
	case c.protoErr != nil:
		what = fmt.Sprintf("exited 0 but %v", c.protoErr)
	case c.result == nil:
		what = "exited 0 without reporting a result"
	default:
		return Clean, ""
	}
	msg := fmt.Sprintf("%v %s", c, what)
	if s := strings.TrimSpace(c.stderr.String()); s != "" {
		msg += ": " + firstLine(s)
	}
	return o, msg
}

// CPU returns the child's user and system CPU time (zero before it exits).
func (c *Child) CPU() (user, sys time.Duration) {
	if c.state == nil {
		return 0, 0
	}
	return c.state.UserTime(), c.state.SystemTime()
}

// Exit says how the child exited ("exit status 0", "signal: killed") and
// its exit code (-1 if it did not exit by itself or was never reaped).
func (c *Child) Exit() (string, int) {
	if c.state != nil {
		return c.state.String(), c.state.ExitCode()
	}
	return fmt.Sprint(c.waitErr), -1
}

// Stderr is what the child wrote on its stderr (its start and its end).
func (c *Child) Stderr() string { return strings.TrimSpace(c.stderr.String()) }

// Result is the result the child reported, nil if none.
func (c *Child) Result() *Result {
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

// ErrNotReady is returned by waitReady when a child exits before it is ready.
var ErrNotReady = errors.New("exited before it was ready")

// WaitReady waits until every child is ready, one exits first, or timeout.
func WaitReady(children []*Child, timeout time.Duration) error {
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
			return fmt.Errorf("%v %w", c, ErrNotReady)
		case <-deadline.C:
			return fmt.Errorf("%v was not ready after %v", c, timeout)
		}
	}
	return nil
}
