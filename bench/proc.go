package main

// Child processes, the parent's side (the protocol is described in
// child.go): spawn a role, wait for "ready", send the start byte, read the
// "result" line, and check the exit status. Every error carries the child's
// exit status and stderr. A child is killed when the context is done, and
// kills itself on its own watchdog and when the parent dies.

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
)

// spawnOpts are the optional parts of starting a child.
type spawnOpts struct {
	files    []*os.File    // become the child's descriptors 3, 4, ...
	wrap     []string      // command prefix (perf stat ..., strace ...)
	watchdog time.Duration // the child exits after this long (default 1 minute)
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

// spawn starts a child in role r with arguments a. The child is killed when
// ctx is done.
func (r role[A]) spawn(ctx context.Context, a A, o spawnOpts) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	argv := append(append([]string(nil), o.wrap...), exe)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	wd := o.watchdog
	if wd <= 0 {
		wd = time.Minute
	}
	cmd.Env = append(os.Environ(), roleEnv+"="+r.name, argsEnv+"="+string(args), watchdogEnv+"="+wd.String())
	cmd.ExtraFiles = o.files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	p := &proc{role: r.name, cmd: cmd, stderr: &lockedBuffer{}}
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
		return nil, fmt.Errorf("start %s: %w", r.name, err)
	}
	return p, nil
}

// run runs one lone child of role r to its end: spawn, ready, start, and
// its result decoded into res. The child gets timeout, the parent 10 s more.
func (r role[A]) run(ctx context.Context, a A, timeout time.Duration, res any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	p, err := r.spawn(ctx, a, spawnOpts{watchdog: timeout})
	if err != nil {
		return err
	}
	defer p.kill()
	if err := p.awaitReady(); err != nil {
		return err
	}
	if err := p.start(); err != nil {
		return err
	}
	return p.finish(res)
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

// launch readies and starts every child of g (in that order).
func (g group) launch() (int64, error) {
	if err := g.readyAll(); err != nil {
		return 0, err
	}
	return g.startAll()
}
