package mpmc

// Multi-process tests: the test binary re-executes itself with childRoleEnv
// set, and TestMain runs the role instead of the tests.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	childRoleEnv  = "MPMC_TEST_CHILD"
	childPathEnv  = "MPMC_TEST_PATH"
	childIDEnv    = "MPMC_TEST_ID"
	childCountEnv = "MPMC_TEST_COUNT"
)

// childRoles holds the roles of child processes that tests in other files
// add (in init functions): runChild runs them by name.
var childRoles = map[string]func(path string) int{}

// queueRole is a child role that joins a queue with join (given the
// role's path) and runs body on it, closing the handle when body returns.
// A failed join is said on stderr after what, with exit status 1.
func queueRole(what string, join func(path string) (*Queue, error), body func(q *Queue) int) func(path string) int {
	return func(path string) int {
		q, err := join(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, what+":", err)
			return 1
		}
		defer q.Close()
		return body(q)
	}
}

// Record format written by consumer children: producer id (uint32) and
// sequence (uint64), little endian.
const recordSize = 12

// runChild runs one role in a child process and returns its exit status.
// Anything on stderr is a failure the parent reports.
func runChild(role string) int {
	path := os.Getenv(childPathEnv)
	id, _ := strconv.Atoi(os.Getenv(childIDEnv))
	count, _ := strconv.Atoi(os.Getenv(childCountEnv))
	if role == "create-race" {
		return createRace(path)
	}
	if f := childRoles[role]; f != nil {
		return f(path)
	}
	q, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch role {
	case "produce":
		msg := make([]byte, recordSize)
		binary.LittleEndian.PutUint32(msg, uint32(id))
		for seq := range count {
			binary.LittleEndian.PutUint64(msg[4:], uint64(seq))
			if err := q.Enqueue(ctx, msg); err != nil {
				fmt.Fprintf(os.Stderr, "producer %d, message %d: %v\n", id, seq, err)
				return 1
			}
		}
	case "consume":
		// Writes every message received to stdout, until Shutdown.
		out := bufio.NewWriterSize(os.Stdout, 1<<16)
		buf := make([]byte, q.SlotSize())
		for {
			n, err := q.Dequeue(ctx, buf)
			if errors.Is(err, ErrClosed) {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "dequeue:", err)
				return 1
			}
			if n != recordSize {
				fmt.Fprintf(os.Stderr, "message of %d bytes\n", n)
				return 1
			}
			out.Write(buf[:n])
		}
		if err := out.Flush(); err != nil {
			fmt.Fprintln(os.Stderr, "flush:", err)
			return 1
		}
	case "sleep-dequeue":
		// Sleeps in Dequeue at once, then prints what it got, or
		// "closed" after Shutdown.
		q.SetSpin(0)
		buf := make([]byte, q.SlotSize())
		n, err := q.Dequeue(ctx, buf)
		if code, ended := sleepEnded(err, "dequeue"); ended {
			return code
		}
		fmt.Printf("got %q", buf[:n])
	case "sleep-enqueue":
		q.SetSpin(0)
		err := q.Enqueue(ctx, []byte("late"))
		if code, ended := sleepEnded(err, "enqueue"); ended {
			return code
		}
		fmt.Print("enqueued")
	case "enqueue-one":
		if err := q.Enqueue(ctx, []byte(os.Getenv(childIDEnv))); err != nil {
			fmt.Fprintln(os.Stderr, "enqueue:", err)
			return 1
		}
	case "shutdown":
		if err := q.Shutdown(); err != nil {
			fmt.Fprintln(os.Stderr, "shutdown:", err)
			return 1
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown role", role)
		return 2
	}
	if err := q.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	return 0
}

// sleepEnded ends a sleep-* role whose call returned err: after Shutdown
// (ErrClosed) it prints "closed", status 0; on any other error it says so
// on stderr after op, status 1. ended is false when err is nil.
func sleepEnded(err error, op string) (code int, ended bool) {
	if errors.Is(err, ErrClosed) {
		fmt.Print("closed")
		return 0, true
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, op+":", err)
		return 1, true
	}
	return 0, false
}

// createRace tries to Create path, reports whether it won, then joins the
// queue either way and enqueues one message.
func createRace(path string) int {
	q, err := Create(path, Config{Capacity: 8, SlotSize: 8})
	switch {
	case err == nil:
		fmt.Print("won")
	case errors.Is(err, fs.ErrExist):
		fmt.Print("exists")
		if q, err = Open(path); err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			return 1
		}
	default:
		fmt.Fprintln(os.Stderr, "create:", err)
		return 1
	}
	defer q.Close()
	if err := q.TryEnqueue([]byte("x")); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		return 1
	}
	return 0
}

// child is a running child process of a test.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan error
}

// startChild re-executes the test binary in role, killed when ctx is done.
func startChild(t *testing.T, ctx context.Context, role, path string, env ...string) *child {
	t.Helper()
	return startChildWith(t, ctx, role, path, nil, env...)
}

// startChildWith is startChild with files for the child's descriptors 3,
// 4, ... (exec.Cmd.ExtraFiles).
func startChildWith(t *testing.T, ctx context.Context, role, path string, files []*os.File, env ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	c := &child{name: fmt.Sprintf("%s %v", role, env), done: make(chan error, 1)}
	c.cmd = exec.CommandContext(ctx, exe)
	c.cmd.Env = append(os.Environ(), childRoleEnv+"="+role, childPathEnv+"="+path, "GORACE=atexit_sleep_ms=0")
	c.cmd.Env = append(c.cmd.Env, env...)
	c.cmd.Stdout = &c.stdout
	c.cmd.Stderr = &c.stderr
	c.cmd.WaitDelay = 5 * time.Second
	c.cmd.ExtraFiles = files
	require.NoError(t, c.cmd.Start())
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		c.done <- nil
	})
	return c
}

// wait waits for the child and fails the test unless it exited 0 with
// nothing on stderr.
func (c *child) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		require.NoError(t, err, "child %s failed; stderr:\n%s", c.name, c.stderr.String())
		require.Empty(t, c.stderr.String(), "child %s wrote to stderr", c.name)
	case <-time.After(timeout):
		t.Fatalf("child %s still running after %v; stderr:\n%s", c.name, timeout, c.stderr.String())
	}
}

// running reports whether the child has not exited yet.
func (c *child) running() bool {
	select {
	case err := <-c.done:
		c.done <- err
		return false
	default:
		return true
	}
}

func TestProcessesMPMC(t *testing.T) {
	const producers, consumers = 3, 3
	total := 1_000_000
	if testing.Short() {
		total = 60_000
	}
	perProducer := total / producers
	q, p := newTestQueue(t, 256, recordSize)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var prods, conss []*child
	for c := range consumers {
		conss = append(conss, startChild(t, ctx, "consume", p, childIDEnv+"="+strconv.Itoa(c)))
	}
	for id := range producers {
		prods = append(prods, startChild(t, ctx, "produce", p,
			childIDEnv+"="+strconv.Itoa(id), childCountEnv+"="+strconv.Itoa(perProducer)))
	}
	for _, c := range prods {
		c.wait(t, 5*time.Minute)
	}
	require.NoError(t, q.Shutdown())
	for _, c := range conss {
		c.wait(t, time.Minute)
	}

	seen := make([][]bool, producers)
	for id := range seen {
		seen[id] = make([]bool, perProducer)
	}
	got := 0
	for ci, c := range conss {
		out := c.stdout.Bytes()
		require.Zero(t, len(out)%recordSize, "consumer %d output is not whole records", ci)
		last := make([]int64, producers)
		for i := range last {
			last[i] = -1
		}
		for r := 0; r < len(out); r += recordSize {
			id := binary.LittleEndian.Uint32(out[r:])
			seq := binary.LittleEndian.Uint64(out[r+4:])
			require.Less(t, id, uint32(producers))
			require.Less(t, seq, uint64(perProducer))
			require.False(t, seen[id][seq], "producer %d message %d delivered twice", id, seq)
			seen[id][seq] = true
			require.Greater(t, int64(seq), last[id], "consumer %d saw producer %d out of order", ci, id)
			last[id] = int64(seq)
			got++
		}
		t.Logf("consumer %d received %d messages", ci, len(out)/recordSize)
	}
	for id := range seen {
		for seq, ok := range seen[id] {
			require.True(t, ok, "producer %d message %d lost", id, seq)
		}
	}
	assert.Equal(t, perProducer*producers, got)
	st := q.Stats()
	t.Logf("%d messages across %d+%d processes; stats %+v", got, producers, consumers, st)
	assert.Equal(t, uint64(got), st.DequeuePos)
}

// sleepingOn waits until Inspect shows n participants asleep on a side.
func sleepingOn(t *testing.T, path string, consumers bool, n int) {
	t.Helper()
	waitFor(t, func() bool {
		info, err := Inspect(path)
		require.NoError(t, err)
		if consumers {
			return len(info.SleepingConsumers) >= n
		}
		return len(info.SleepingProducers) >= n
	})
}

// withSleeper creates a queue of four 16-byte slots and starts a child
// asleep in Dequeue on it (sleep-dequeue). Its children are killed when
// ctx, a minute, is done or the test ends.
func withSleeper(t *testing.T) (q *Queue, path string, ctx context.Context, sleeper *child) {
	t.Helper()
	q, path = newTestQueue(t, 4, 16)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	sleeper = startChild(t, ctx, "sleep-dequeue", path)
	sleepingOn(t, path, true, 1)
	return q, path, ctx, sleeper
}

func TestProcessWakeup(t *testing.T) {
	q, p, ctx, sleeper := withSleeper(t)
	assert.True(t, sleeper.running())
	before := q.Stats().ConsumerWakeups
	startChild(t, ctx, "enqueue-one", p, childIDEnv+"=hello").wait(t, 30*time.Second)
	sleeper.wait(t, 30*time.Second)
	assert.Equal(t, `got "hello"`, sleeper.stdout.String())
	assert.Greater(t, q.Stats().ConsumerWakeups, before, "the enqueuing process made the wake-up")
}

func TestProcessShutdownWakesAll(t *testing.T) {
	q, p := newTestQueue(t, 2, 16)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var consumers []*child
	for range 2 {
		consumers = append(consumers, startChild(t, ctx, "sleep-dequeue", p))
	}
	sleepingOn(t, p, true, 2)

	// A second queue, full, with a producer asleep on it.
	full, fullPath := newTestQueue(t, 2, 16)
	require.NoError(t, full.TryEnqueue(nil))
	require.NoError(t, full.TryEnqueue(nil))
	producer := startChild(t, ctx, "sleep-enqueue", fullPath)
	sleepingOn(t, fullPath, false, 1)

	// A third process shuts both down.
	startChild(t, ctx, "shutdown", p).wait(t, 30*time.Second)
	startChild(t, ctx, "shutdown", fullPath).wait(t, 30*time.Second)
	for _, c := range append(consumers, producer) {
		c.wait(t, 30*time.Second)
		assert.Equal(t, "closed", c.stdout.String(), c.name)
	}
	assert.True(t, q.Stats().Shutdown)
	assert.Equal(t, 2, full.Len(), "the full queue kept its messages")
}

func TestProcessConcurrentCreate(t *testing.T) {
	// Processes racing to Create one path: exactly one wins, the others
	// get fs.ErrExist, and then every one of them can Open it.
	p := segPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var kids []*child
	for range 4 {
		kids = append(kids, startChild(t, ctx, "create-race", p))
	}
	won := 0
	for _, c := range kids {
		c.wait(t, 30*time.Second)
		switch c.stdout.String() {
		case "won":
			won++
		case "exists":
		default:
			t.Fatalf("child said %q", c.stdout.String())
		}
	}
	assert.Equal(t, 1, won)
	q := openTestQueue(t, p)
	assert.Equal(t, 4, q.Len(), "each child enqueued one message")
}
