//go:build interop

// Package interop runs the C participant (c/) and Go handles on the same
// queues: exactly-once and per-producer order both ways, wake-ups across
// languages, Shutdown from either side, and the recovery of killed
// participants of either language by the other. Run with `make interop`
// (go test -tags interop ./interop/).
//
// The C side is interop/testdata/peer.c, built with the C compiler into a
// temporary directory, with -DMPMC_TEST_HOOKS so that MPMC_C_CRASH names a
// step at which it kills itself. The Go side uses only the public API; a Go
// participant that must die is this test binary run again as a child
// (MPMC_INTEROP_CHILD), which kills itself while holding a zero-copy claim.
package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmq/mpmc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	childRoleEnv = "MPMC_INTEROP_CHILD"
	childPathEnv = "MPMC_INTEROP_PATH"
	ccFlags      = "-std=c11 -O2 -Wall -Wextra -Werror"
	recordSize   = 12 // u32 producer id, u64 sequence, little endian
)

var (
	binDir     string
	buildOnce  sync.Once
	buildErr   error
	skipReason string
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(goChild(role, os.Getenv(childPathEnv)))
	}
	dir, err := os.MkdirTemp("", "mpmc-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles the C peer (with the test hooks) and the example (without)
// with the project's flags: a warning is an error.
func build() {
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		skipReason = fmt.Sprintf("no C compiler: %v (make interop installs gcc with apt-get when cc is missing)", err)
		return
	}
	flags := strings.Fields(ccFlags)
	for _, b := range []struct {
		out  string
		args []string
	}{
		{"peer", []string{"-DMPMC_TEST_HOOKS", "-I../c", "testdata/peer.c", "../c/mpmc.c"}},
		{"example", []string{"../c/example.c", "../c/mpmc.c"}},
	} {
		args := append(append(append([]string{}, flags...), "-o", filepath.Join(binDir, b.out)), b.args...)
		out, err := exec.Command(cc, args...).CombinedOutput()
		if err != nil || len(out) > 0 {
			buildErr = fmt.Errorf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
			return
		}
	}
}

func bin(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(build)
	if skipReason != "" {
		t.Skip(skipReason)
	}
	require.NoError(t, buildErr)
	return filepath.Join(binDir, name)
}

// ---- segments ----

func segPath(t *testing.T) string {
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	p := fmt.Sprintf("/dev/shm/mpmc-interop-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.Remove(p) })
	return p
}

func newQueue(t *testing.T, capacity, slot int) (*mpmc.Queue, string) {
	t.Helper()
	p := segPath(t)
	q, err := mpmc.Create(p, mpmc.Config{Capacity: capacity, SlotSize: slot})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return q, p
}

func openQueue(t *testing.T, p string) *mpmc.Queue {
	t.Helper()
	q, err := mpmc.Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return q
}

// ---- child processes ----

// syncBuffer collects a child's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	stdin          io.WriteCloser
	done           chan struct{}
	err            error
	ended          time.Time
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: fmt.Sprintf("%s %s", filepath.Base(name), strings.Join(args, " ")), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	in, err := p.cmd.StdinPipe()
	require.NoError(t, err)
	p.stdin = in
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		p.ended = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// startC runs the C peer in role on path.
func startC(t *testing.T, env []string, role, path string, args ...string) *proc {
	return start(t, env, bin(t, "peer"), append([]string{role, path}, args...)...)
}

// startGo runs this test binary as a Go participant in role on path.
func startGo(t *testing.T, role, path string) *proc {
	exe, err := os.Executable()
	require.NoError(t, err)
	return start(t, []string{childRoleEnv + "=" + role, childPathEnv + "=" + path}, exe)
}

func (p *proc) waitDone(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s still running after %v; stdout %q stderr %q", p.name, within, p.stdout.String(), p.stderr.String())
	}
}

// wait waits for a clean exit (status 0, nothing on stderr) and returns
// the child's stdout.
func (p *proc) wait(t *testing.T, within time.Duration) string {
	t.Helper()
	p.waitDone(t, within)
	require.NoError(t, p.err, "%s: stderr %q", p.name, p.stderr.String())
	require.Empty(t, p.stderr.String(), "%s wrote to stderr", p.name)
	return p.stdout.String()
}

// waitKilled waits for the child to die of SIGKILL with nothing on stderr.
func (p *proc) waitKilled(t *testing.T, within time.Duration) {
	t.Helper()
	p.waitDone(t, within)
	var ee *exec.ExitError
	require.ErrorAs(t, p.err, &ee, "%s should have been killed: stderr %q", p.name, p.stderr.String())
	ws := ee.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "%s: %v, stderr %q", p.name, p.err, p.stderr.String())
	require.Empty(t, p.stderr.String())
}

// waitOutput waits until the child's stdout contains s.
func (p *proc) waitOutput(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.stdout.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %q: stdout %q stderr %q", p.name, p.err, s, p.stdout.String(), p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v: stdout %q stderr %q", p.name, s, within, p.stdout.String(), p.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// goChild runs a Go participant role in a child process: it joins, says
// "ready", waits for a line on stdin, takes a zero-copy claim and kills
// itself holding it (reserve-die, take-die), or holds it until a second
// line and commits it (reserve-hold).
func goChild(role, path string) int {
	failed := func(what string, err error) bool {
		if err != nil {
			fmt.Fprintln(os.Stderr, what+":", err)
		}
		return err != nil
	}
	q, err := mpmc.Open(path)
	if failed("open", err) {
		return 1
	}
	fmt.Println("ready")
	if _, err := fmt.Scanln(); failed("stdin", err) {
		return 1
	}
	switch role {
	case "reserve-die":
		r, err := q.TryReserve()
		if failed("reserve", err) {
			return 1
		}
		copy(r.Bytes(), "never committed")
	case "reserve-hold":
		// A live producer holding its claim until told to commit.
		r, err := q.TryReserve()
		if failed("reserve", err) {
			return 1
		}
		n := copy(r.Bytes(), "late")
		fmt.Println("held")
		if _, err := fmt.Scanln(); failed("stdin", err) {
			return 1
		}
		if err := r.Commit(n); failed("commit", err) {
			return 1
		}
		if err := q.Close(); failed("close", err) {
			return 1
		}
		return 0
	case "take-die":
		if _, err := q.TryTake(); failed("take", err) {
			return 1
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown role", role)
		return 1
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Minute)
	fmt.Fprintln(os.Stderr, role, "survived")
	return 1
}

// ---- exactly-once and order ----

type record struct {
	id  uint32
	seq uint64
}

func decode(t *testing.T, b []byte) []record {
	t.Helper()
	require.Zero(t, len(b)%recordSize, "consumer output of %d bytes", len(b))
	out := make([]record, 0, len(b)/recordSize)
	for i := 0; i < len(b); i += recordSize {
		out = append(out, record{binary.LittleEndian.Uint32(b[i:]), binary.LittleEndian.Uint64(b[i+4:])})
	}
	return out
}

// verify checks that the consumers together received every (producer,
// sequence) exactly once, and each consumer a producer's messages in order.
func verify(t *testing.T, producers, perProducer int, consumers [][]record) {
	t.Helper()
	seen := make([][]bool, producers)
	for i := range seen {
		seen[i] = make([]bool, perProducer)
	}
	total := 0
	for ci, recs := range consumers {
		last := make(map[uint32]uint64)
		for _, r := range recs {
			require.Less(t, int(r.id), producers, "consumer %d: unknown producer %d", ci, r.id)
			require.Less(t, r.seq, uint64(perProducer), "consumer %d: sequence %d of producer %d", ci, r.seq, r.id)
			require.False(t, seen[r.id][r.seq], "message %d of producer %d delivered twice", r.seq, r.id)
			seen[r.id][r.seq] = true
			if l, ok := last[r.id]; ok {
				require.Greater(t, r.seq, l, "consumer %d: producer %d out of order", ci, r.id)
			}
			last[r.id] = r.seq
			total++
		}
	}
	require.Equal(t, producers*perProducer, total, "messages delivered")
}

func goProduce(q *mpmc.Queue, id, count int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := make([]byte, recordSize)
	binary.LittleEndian.PutUint32(msg, uint32(id))
	for s := range count {
		binary.LittleEndian.PutUint64(msg[4:], uint64(s))
		if err := q.Enqueue(ctx, msg); err != nil {
			return fmt.Errorf("go producer %d, message %d: %w", id, s, err)
		}
	}
	return nil
}

func goConsume(q *mpmc.Queue) ([]record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	buf := make([]byte, q.SlotSize())
	var out []record
	for {
		n, err := q.Dequeue(ctx, buf)
		if errors.Is(err, mpmc.ErrClosed) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if n != recordSize {
			return out, fmt.Errorf("message of %d bytes", n)
		}
		out = append(out, record{binary.LittleEndian.Uint32(buf), binary.LittleEndian.Uint64(buf[4:])})
	}
}

// runMix runs cProd C producers (ids 0..) and goProd Go producers (the ids
// after them), cCons C consumers and goCons Go consumers on one queue, shuts
// it down once every producer is done, and verifies what was delivered.
func runMix(t *testing.T, cProd, goProd, cCons, goCons, perProducer int) {
	q, p := newQueue(t, 64, 16)
	type result struct {
		recs []record
		err  error
	}
	goRes := make(chan result, goCons)
	for range goCons {
		h := openQueue(t, p)
		go func() {
			recs, err := goConsume(h)
			goRes <- result{recs, err}
		}()
	}
	var ccons []*proc
	for range cCons {
		ccons = append(ccons, startC(t, nil, "consume", p))
	}
	var cprod []*proc
	for i := range cProd {
		cprod = append(cprod, startC(t, nil, "produce", p, strconv.Itoa(i), strconv.Itoa(perProducer)))
	}
	prodErr := make(chan error, goProd)
	for i := range goProd {
		h := openQueue(t, p)
		go func() { prodErr <- goProduce(h, cProd+i, perProducer) }()
	}
	for _, c := range cprod {
		require.Empty(t, c.wait(t, 2*time.Minute), "a producer prints nothing")
	}
	for range goProd {
		require.NoError(t, <-prodErr)
	}
	require.NoError(t, q.Shutdown())
	var all [][]record
	for _, c := range ccons {
		all = append(all, decode(t, []byte(c.wait(t, time.Minute))))
	}
	for range goCons {
		r := <-goRes
		require.NoError(t, r.err)
		all = append(all, r.recs)
	}
	verify(t, cProd+goProd, perProducer, all)
	st := q.Stats()
	assert.Equal(t, st.EnqueuePos, st.DequeuePos, "everything claimed was taken")
	assert.Zero(t, st.Len)
}

func TestCProducersGoConsumers(t *testing.T) { runMix(t, 3, 0, 0, 2, 20000) }
func TestGoProducersCConsumers(t *testing.T) { runMix(t, 0, 3, 2, 0, 20000) }
func TestMixedProducersConsumers(t *testing.T) {
	runMix(t, 2, 2, 2, 2, 10000)
}

// Threads of one C participant share its handle (each call takes a record
// of the handle's entry of its own): 4 producer threads in one C process and
// 3 consumer threads in another, with a Go producer and a Go consumer.
func TestThreadedCParticipants(t *testing.T) {
	const per = 10000
	q, p := newQueue(t, 64, 16)
	g := openQueue(t, p)
	goRes := make(chan []record, 1)
	goErr := make(chan error, 2)
	go func() {
		recs, err := goConsume(g)
		goRes <- recs
		goErr <- err
	}()
	cons := startC(t, nil, "consume-mt", p, "3")
	prod := startC(t, nil, "produce-mt", p, "0", "4", strconv.Itoa(per))
	gp := openQueue(t, p)
	go func() { goErr <- goProduce(gp, 4, per) }()
	require.Empty(t, prod.wait(t, 2*time.Minute))
	require.NoError(t, <-goErr)
	require.NoError(t, q.Shutdown())
	out := []byte(cons.wait(t, time.Minute))
	var all [][]record
	for range 3 {
		require.GreaterOrEqual(t, len(out), 8)
		n := binary.LittleEndian.Uint64(out)
		require.LessOrEqual(t, n, uint64(len(out)-8))
		all = append(all, decode(t, out[8:8+n]))
		out = out[8+n:]
	}
	require.Empty(t, out)
	all = append(all, <-goRes)
	require.NoError(t, <-goErr)
	verify(t, 5, per, all)
	info, err := mpmc.Inspect(p)
	require.NoError(t, err)
	for _, pt := range info.Participants {
		assert.Zero(t, pt.Claims, "entry %d names a claim after everyone finished", pt.Index)
	}
}

// ---- wake-ups across languages ----

// waitStat waits until f(q.Stats()) holds.
func waitStat(t *testing.T, q *mpmc.Queue, what string, f func(mpmc.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f(q.Stats()) {
		require.True(t, time.Now().Before(deadline), "waiting for %s: %+v", what, q.Stats())
		time.Sleep(time.Millisecond)
	}
}

// A C consumer asleep on an empty queue is woken by a Go producer's claim.
// Its idle slice is a minute, so only the wake-up can make it return
// within the bound.
func TestGoProducerWakesCConsumer(t *testing.T) {
	q, p := newQueue(t, 8, 32)
	c := startC(t, []string{"MPMC_C_SPIN_NS=0", "MPMC_C_IDLE_MS=60000"}, "sleep-dequeue", p)
	waitStat(t, q, "the C consumer asleep", func(s mpmc.Stats) bool { return s.ConsumerSleeps > 0 })
	wakes := q.Stats().ConsumerWakeups
	t0 := time.Now()
	require.NoError(t, q.TryEnqueue([]byte("hello")))
	assert.Equal(t, "got hello\n", c.wait(t, 10*time.Second))
	assert.Less(t, c.ended.Sub(t0), 5*time.Second, "the C consumer returned promptly after the enqueue")
	assert.Greater(t, q.Stats().ConsumerWakeups, wakes, "the Go producer kicked the consumers")
}

// goWokenByC starts call (a blocking Go call on a handle that does not
// spin) and waits for the Go side to sleep (sleeps and wakeups pick the
// counters of the side that sleeps), then runs the C role that claims
// and must wake it. It checks the C peer's output, that its claim saw the
// asleep bit and kicked, and that call returned promptly and without error.
func goWokenByC(t *testing.T, q *mpmc.Queue, call func(ctx context.Context) error, sleeper string, sleeps, wakeups func(mpmc.Stats) uint64, cRole, cOut string, cArgs ...string) {
	t.Helper()
	type result struct {
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := call(ctx)
		res <- result{err, time.Now()}
	}()
	waitStat(t, q, sleeper+" asleep", func(s mpmc.Stats) bool { return sleeps(s) > 0 })
	wakes := wakeups(q.Stats())
	c := startC(t, nil, cRole, q.Path(), cArgs...)
	assert.Equal(t, cOut, c.wait(t, 10*time.Second))
	assert.Greater(t, wakeups(q.Stats()), wakes, "the C claim saw the asleep bit and kicked")
	select {
	case r := <-res:
		require.NoError(t, r.err)
		// The Go idle slice is 2 s: a lost wake-up would mostly show here.
		assert.Less(t, r.at.Sub(c.ended), 1500*time.Millisecond, sleeper+" returned promptly")
	case <-time.After(10 * time.Second):
		t.Fatal(sleeper + " was not woken")
	}
}

// A Go consumer asleep on an empty queue is woken by a C producer's claim.
func TestCProducerWakesGoConsumer(t *testing.T) {
	q, p := newQueue(t, 8, 32)
	h := openQueue(t, p)
	h.SetSpin(0)
	var msg string
	goWokenByC(t, q, func(ctx context.Context) error {
		buf := make([]byte, 32)
		n, err := h.Dequeue(ctx, buf)
		msg = string(buf[:n])
		return err
	}, "the Go consumer", func(s mpmc.Stats) uint64 { return s.ConsumerSleeps },
		func(s mpmc.Stats) uint64 { return s.ConsumerWakeups }, "put", "put\n", "hello")
	assert.Equal(t, "hello", msg)
}

// A C producer asleep on a full queue is woken by a Go consumer's claim.
func TestGoConsumerWakesCProducer(t *testing.T) {
	q, p := newQueue(t, 2, 32)
	require.NoError(t, q.TryEnqueue([]byte("a")))
	require.NoError(t, q.TryEnqueue([]byte("b")))
	c := startC(t, []string{"MPMC_C_SPIN_NS=0", "MPMC_C_IDLE_MS=60000"}, "sleep-enqueue", p, "c")
	waitStat(t, q, "the C producer asleep", func(s mpmc.Stats) bool { return s.ProducerSleeps > 0 })
	wakes := q.Stats().ProducerWakeups
	buf := make([]byte, 32)
	t0 := time.Now()
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "a", string(buf[:n]))
	assert.Equal(t, "enqueued\n", c.wait(t, 10*time.Second))
	assert.Less(t, c.ended.Sub(t0), 5*time.Second, "the C producer returned promptly after the dequeue")
	assert.Greater(t, q.Stats().ProducerWakeups, wakes)
	takeAll(t, q, "b", "c")
}

// A Go producer asleep on a full queue is woken by a C consumer's claim.
func TestCConsumerWakesGoProducer(t *testing.T) {
	q, p := newQueue(t, 2, 32)
	require.NoError(t, q.TryEnqueue([]byte("a")))
	require.NoError(t, q.TryEnqueue([]byte("b")))
	h := openQueue(t, p)
	h.SetSpin(0)
	goWokenByC(t, q, func(ctx context.Context) error { return h.Enqueue(ctx, []byte("c")) },
		"the Go producer", func(s mpmc.Stats) uint64 { return s.ProducerSleeps },
		func(s mpmc.Stats) uint64 { return s.ProducerWakeups }, "take", "ready\ngot a\n", "1")
}

// takeAll checks that the messages at the head, there now, are want, in
// order, and takes them.
func takeAll(t *testing.T, q *mpmc.Queue, want ...string) {
	t.Helper()
	buf := make([]byte, q.SlotSize())
	for _, w := range want {
		n, err := q.TryDequeue(buf)
		require.NoError(t, err)
		assert.Equal(t, w, string(buf[:n]))
	}
}

// ---- Shutdown from either side ----

// Go shuts down: a C consumer drains what is left, then sees closed; a C
// producer asleep on a full queue wakes and sees closed.
func TestGoShutdownCDrains(t *testing.T) {
	q, p := newQueue(t, 8, 32)
	for _, m := range []string{"m0", "m1", "m2"} {
		require.NoError(t, q.TryEnqueue([]byte(m)))
	}
	c := startC(t, []string{"MPMC_C_IDLE_MS=60000"}, "take", p, "5")
	c.waitOutput(t, "got m2\n", 10*time.Second)
	waitStat(t, q, "the C consumer asleep", func(s mpmc.Stats) bool { return s.ConsumerSleeps > 0 })
	require.NoError(t, q.TryEnqueue([]byte("m3")))
	require.NoError(t, q.TryEnqueue([]byte("m4")))
	assert.Equal(t, "ready\ngot m0\ngot m1\ngot m2\ngot m3\ngot m4\n", c.wait(t, 10*time.Second))

	// Fill the queue, put a C producer to sleep on it, start a C
	// consumer-to-be, then shut down.
	for i := range 8 {
		require.NoError(t, q.TryEnqueue([]byte(fmt.Sprint("f", i))))
	}
	prod := startC(t, []string{"MPMC_C_SPIN_NS=0", "MPMC_C_IDLE_MS=60000"}, "sleep-enqueue", p, "late")
	waitStat(t, q, "the C producer asleep", func(s mpmc.Stats) bool { return s.ProducerSleeps > 0 })
	require.NoError(t, q.Shutdown())
	assert.Equal(t, "closed\n", prod.wait(t, 10*time.Second), "a producer asleep sees closed")
	drain := startC(t, nil, "drain", p)
	want := ""
	for i := range 8 {
		want += fmt.Sprintf("got f%d\n", i)
	}
	assert.Equal(t, want+"closed\n", drain.wait(t, 10*time.Second), "the C consumer drains, then sees closed")
	assert.ErrorIs(t, q.TryEnqueue([]byte("x")), mpmc.ErrClosed)
}

// C shuts down: a Go consumer drains, then sees closed; a Go consumer asleep
// wakes and sees closed; Go enqueues fail.
func TestCShutdownGoDrains(t *testing.T) {
	q, p := newQueue(t, 8, 32)
	sleeper := openQueue(t, p)
	sleeper.SetSpin(0)
	for _, m := range []string{"m0", "m1", "m2"} {
		require.NoError(t, q.TryEnqueue([]byte(m)))
	}
	// The sleeper takes what is there, then sleeps until Shutdown.
	type result struct {
		got []string
		err error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var got []string
		buf := make([]byte, 32)
		for {
			n, err := sleeper.Dequeue(ctx, buf)
			if err != nil {
				res <- result{got, err}
				return
			}
			got = append(got, string(buf[:n]))
		}
	}()
	waitStat(t, q, "the Go consumer asleep", func(s mpmc.Stats) bool { return s.ConsumerSleeps > 0 && s.DequeuePos == 3 })
	require.Empty(t, startC(t, nil, "shutdown", p).wait(t, 10*time.Second))
	select {
	case r := <-res:
		assert.ErrorIs(t, r.err, mpmc.ErrClosed)
		assert.Equal(t, []string{"m0", "m1", "m2"}, r.got)
	case <-time.After(10 * time.Second):
		t.Fatal("the Go consumer asleep was not woken by the C Shutdown")
	}
	assert.True(t, q.Stats().Shutdown)
	assert.ErrorIs(t, q.TryEnqueue([]byte("x")), mpmc.ErrClosed)
	buf := make([]byte, 32)
	_, err := q.TryDequeue(buf)
	assert.ErrorIs(t, err, mpmc.ErrClosed)
	assert.Equal(t, "closed\n", startC(t, nil, "sleep-enqueue", p, "late").wait(t, 10*time.Second),
		"a C enqueue after Shutdown fails")
}

// ---- killed participants ----

// A C producer SIGKILLed between its claim and its publish holds the
// consumers up; a Go consumer's stall check recovers the claim as skipped.
func TestKilledCProducerRecoveredByGo(t *testing.T) {
	for _, step := range []string{"enqueue-claimed", "enqueue-before-publish"} {
		t.Run(step, func(t *testing.T) {
			q, p := newQueue(t, 4, 32)
			q.SetRecoveryTimeout(20 * time.Millisecond)
			require.NoError(t, q.TryEnqueue([]byte("a")))
			startC(t, []string{"MPMC_C_CRASH=" + step}, "crash-enqueue", p).waitKilled(t, 10*time.Second)
			st := q.Stats()
			require.Equal(t, uint64(2), st.EnqueuePos, "the C producer claimed position 1")
			require.NoError(t, q.TryEnqueue([]byte("b")))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			buf := make([]byte, 32)
			for _, want := range []string{"a", "b"} {
				n, err := q.Dequeue(ctx, buf)
				require.NoError(t, err)
				assert.Equal(t, want, string(buf[:n]))
			}
			st = q.Stats()
			assert.Equal(t, uint64(1), st.RecoveredWrites, "the dead claim became a skipped slot")
			assert.Equal(t, uint64(1), st.SkippedSlots)
		})
	}
}

// A C consumer SIGKILLed holding a taken slot holds the producers up a lap
// later; a Go producer's stall check releases the slot.
func TestKilledCConsumerRecoveredByGo(t *testing.T) {
	for _, step := range []string{"dequeue-claimed", "dequeue-before-release"} {
		t.Run(step, func(t *testing.T) {
			q, p := newQueue(t, 4, 32)
			q.SetRecoveryTimeout(20 * time.Millisecond)
			for _, m := range []string{"a", "b", "c", "d"} {
				require.NoError(t, q.TryEnqueue([]byte(m)))
			}
			startC(t, []string{"MPMC_C_CRASH=" + step}, "crash-dequeue", p).waitKilled(t, 10*time.Second)
			require.Equal(t, uint64(1), q.Stats().DequeuePos, "the C consumer claimed position 0")
			buf := make([]byte, 32)
			takeAll(t, q, "b", "c", "d")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, q.Enqueue(ctx, []byte("e")), "the dead consumer's slot is released")
			n, err := q.TryDequeue(buf)
			require.NoError(t, err)
			assert.Equal(t, "e", string(buf[:n]))
			assert.Equal(t, uint64(1), q.Stats().RecoveredReads, "message a was lost with its consumer")
		})
	}
}

// A Go producer killed holding a Reservation holds a C consumer up; the C
// consumer, joined before the death, recovers the claim (stall check).
func TestKilledGoProducerRecoveredByC(t *testing.T) {
	q, p := newQueue(t, 4, 32)
	require.NoError(t, q.TryEnqueue([]byte("a")))
	g := startGo(t, "reserve-die", p)
	g.waitOutput(t, "ready\n", 10*time.Second)
	c := startC(t, []string{"MPMC_C_RECOVERY_MS=20"}, "take", p, "2")
	c.waitOutput(t, "got a\n", 10*time.Second)
	fmt.Fprintln(g.stdin)
	g.waitKilled(t, 10*time.Second)
	require.Equal(t, uint64(2), q.Stats().EnqueuePos, "the Go producer claimed position 1")
	require.NoError(t, q.TryEnqueue([]byte("b")))
	assert.Equal(t, "ready\ngot a\ngot b\n", c.wait(t, 10*time.Second))
	assert.Equal(t, uint64(1), q.Stats().RecoveredWrites)
}

// A Go consumer killed holding a Taken holds a C producer up a lap later;
// the C producer, joined before the death, releases the slot.
func TestKilledGoConsumerRecoveredByC(t *testing.T) {
	q, p := newQueue(t, 4, 32)
	for _, m := range []string{"a", "b", "c", "d"} {
		require.NoError(t, q.TryEnqueue([]byte(m)))
	}
	g := startGo(t, "take-die", p)
	g.waitOutput(t, "ready\n", 10*time.Second)
	c := startC(t, []string{"MPMC_C_RECOVERY_MS=20", "MPMC_C_SPIN_NS=0"}, "put", p, "e")
	waitStat(t, q, "the C producer asleep", func(s mpmc.Stats) bool { return s.ProducerSleeps > 0 })
	fmt.Fprintln(g.stdin)
	g.waitKilled(t, 10*time.Second)
	assert.Equal(t, "put\n", c.wait(t, 10*time.Second))
	takeAll(t, q, "b", "c", "d", "e")
	assert.Equal(t, uint64(1), q.Stats().RecoveredReads)
}

// A Go producer killed before the C consumer joins: the C Open's sweep
// recovers the claim. The C recovery timeout is ten minutes, so the stall
// check cannot be what does it. The dead entry (2) is not the one the C
// joiner takes (1, freed before), so the sweep must find the dead claim's
// record and ask the kernel whether its owner lives.
func TestCOpenSweepsDeadGoClaim(t *testing.T) {
	q, p := newQueue(t, 4, 32)
	require.NoError(t, q.TryEnqueue([]byte("a")))
	h, err := mpmc.Open(p)
	require.NoError(t, err)
	g := startGo(t, "reserve-die", p)
	g.waitOutput(t, "ready\n", 10*time.Second)
	require.NoError(t, h.Close())
	fmt.Fprintln(g.stdin)
	g.waitKilled(t, 10*time.Second)
	info, err := mpmc.Inspect(p)
	require.NoError(t, err)
	require.Len(t, info.Participants, 2)
	dead := info.Participants[1]
	require.Equal(t, 2, dead.Index)
	require.False(t, dead.Alive)
	require.Equal(t, 1, dead.Claims, "the dead Go producer's record names its claim")
	require.NoError(t, q.TryEnqueue([]byte("b")))
	c := startC(t, []string{"MPMC_C_RECOVERY_MS=600000", "MPMC_C_TIMEOUT_MS=20000"}, "take", p, "2")
	assert.Equal(t, "ready\ngot a\ngot b\n", c.wait(t, 30*time.Second))
	assert.Equal(t, uint64(1), q.Stats().RecoveredWrites)
}

// ---- validation ----

// The C Open refuses what the Go Open refuses, with a reason.
func TestCOpenRefusesBadFiles(t *testing.T) {
	_, good := newQueue(t, 4, 32)
	img, err := os.ReadFile(good)
	require.NoError(t, err)
	patch := func(off int, v uint64, size int) []byte {
		b := bytes.Clone(img)
		switch size {
		case 2:
			binary.NativeEndian.PutUint16(b[off:], uint16(v))
		case 4:
			binary.NativeEndian.PutUint32(b[off:], uint32(v))
		case 8:
			binary.NativeEndian.PutUint64(b[off:], v)
		}
		return b
	}
	cases := []struct {
		name   string
		data   []byte
		sparse bool // a file of the segment's size with no pages allocated
		want   string
	}{
		{"empty", nil, false, "EBADSEG: empty file"},
		{"tiny", []byte("hello"), false, "EBADSEG: file of 5 bytes"},
		{"blank header", make([]byte, len(img)), false, "EBADSEG: blank header"},
		{"half-built", patch(0x58, 0, 4), false, "EBADSEG: abandoned half-built segment"},
		{"other byte order", patch(0, 0x53484D514D504D43, 8), false, "EBADSEG: segment of the other byte order"},
		{"version 1", patch(0x08, 1, 2), false, "EBADSEG: layout version 1.0"},
		{"capacity 3", patch(0x18, 3, 8), false, "EBADSEG: capacity 3"},
		{"stride", patch(0x28, 128, 8), false, "EBADSEG: slot stride 128"},
		{"truncated", img[:len(img)-64], false, "EBADSEG: file size"},
		{"sparse", nil, true, "EBADSEG: sparse file"},
		{"redeliver", patch(0x60, 1, 4), false, "EREDELIVER: the segment was created with Redeliver"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := segPath(t)
			if tc.sparse {
				f, err := os.Create(p)
				require.NoError(t, err)
				_, err = f.Write(img[:0x1000]) // a valid header, then a hole
				require.NoError(t, err)
				require.NoError(t, f.Truncate(int64(len(img))))
				require.NoError(t, f.Close())
			} else {
				require.NoError(t, os.WriteFile(p, tc.data, 0o600))
			}
			c := startC(t, nil, "open", p)
			c.waitDone(t, 20*time.Second)
			require.Empty(t, c.stderr.String())
			var ee *exec.ExitError
			require.ErrorAs(t, c.err, &ee, "the C peer opened %s: %q", tc.name, c.stdout.String())
			assert.Equal(t, 3, ee.ExitCode())
			assert.True(t, strings.HasPrefix(c.stdout.String(), tc.want), "got %q, want %q...", c.stdout.String(), tc.want)
			if tc.name != "redeliver" {
				_, err := mpmc.Open(p)
				assert.ErrorIs(t, err, mpmc.ErrBadSegment, "the Go Open refuses it too")
			}
		})
	}
	// And a segment that Go made with Config.Redeliver.
	p := segPath(t)
	r, err := mpmc.Create(p, mpmc.Config{Capacity: 4, SlotSize: 8, Redeliver: true})
	require.NoError(t, err)
	defer r.Close()
	c := startC(t, nil, "open", p)
	c.waitDone(t, 10*time.Second)
	require.Empty(t, c.stderr.String())
	var ee *exec.ExitError
	require.ErrorAs(t, c.err, &ee, "the C peer joined a Redeliver segment")
	assert.Equal(t, 3, ee.ExitCode())
	assert.True(t, strings.HasPrefix(c.stdout.String(), "EREDELIVER:"), "got %q", c.stdout.String())
}

// ---- the example ----

func TestExample(t *testing.T) {
	q, p := newQueue(t, 8, 64)
	ex := bin(t, "example")
	assert.Empty(t, start(t, nil, ex, "produce", p, "x", "yy", "zzz").wait(t, 10*time.Second))
	takeAll(t, q, "x", "yy", "zzz")
	require.NoError(t, q.TryEnqueue([]byte("p")))
	require.NoError(t, q.TryEnqueue([]byte("q")))
	require.NoError(t, q.Shutdown())
	assert.Equal(t, "p\nq\n", start(t, nil, ex, "consume", p).wait(t, 10*time.Second))
}

// ---- live claimants are waited for ----

// stopped waits until the process is stopped (SIGSTOP at a hook).
func (p *proc) waitStopped(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		require.NoError(t, err)
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " T") {
			return
		}
		require.True(t, time.Now().Before(deadline), "%s did not stop: %s", p.name, s)
		time.Sleep(time.Millisecond)
	}
}

// A C producer stopped (alive) between its claim and its publish is never
// overtaken by a Go consumer, however short its recovery timeout: the C
// record names the claim and the C entry is locked.
func TestStoppedCProducerIsWaitedFor(t *testing.T) {
	q, p := newQueue(t, 4, 32)
	q.SetRecoveryTimeout(10 * time.Millisecond)
	c := startC(t, []string{"MPMC_C_STOP=enqueue-before-publish"}, "sleep-enqueue", p, "slow")
	c.waitStopped(t)
	t.Cleanup(func() { c.cmd.Process.Signal(syscall.SIGCONT) })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	buf := make([]byte, 32)
	_, err := q.Dequeue(ctx, buf)
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing to take while the claimant stalls")
	_, err = q.TryDequeue(buf)
	require.ErrorIs(t, err, mpmc.ErrEmpty, "a claimed, unpublished head is empty")
	require.Zero(t, q.Stats().RecoveredWrites, "a live C claim was recovered")
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGCONT))
	assert.Equal(t, "enqueued\n", c.wait(t, 10*time.Second))
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "slow", string(buf[:n]))
}

// holdReservation starts a Go participant (role reserve-hold) that
// reserves a slot and holds the reservation until commitReservation.
func holdReservation(t *testing.T, p string) *proc {
	g := startGo(t, "reserve-hold", p)
	g.waitOutput(t, "ready\n", 10*time.Second)
	fmt.Fprintln(g.stdin)
	g.waitOutput(t, "held\n", 10*time.Second)
	return g
}

// commitReservation tells the reserve-hold participant to commit "late"
// and waits for it to exit.
func (g *proc) commitReservation(t *testing.T) {
	fmt.Fprintln(g.stdin)
	assert.Equal(t, "ready\nheld\n", g.wait(t, 10*time.Second))
}

// A live Go producer holding a Reservation is never overtaken by a C
// consumer with a 10 ms recovery timeout.
func TestHeldGoReservationIsWaitedForByC(t *testing.T) {
	q, p := newQueue(t, 4, 32)
	g := holdReservation(t, p)
	c := startC(t, []string{"MPMC_C_RECOVERY_MS=10"}, "take", p, "1")
	c.waitOutput(t, "ready\n", 10*time.Second)
	time.Sleep(300 * time.Millisecond) // 30 recovery timeouts
	require.Equal(t, "ready\n", c.stdout.String(), "the C consumer took nothing yet")
	require.Zero(t, q.Stats().RecoveredWrites, "a live Go claim was recovered by C")
	g.commitReservation(t)
	assert.Equal(t, "ready\ngot late\n", c.wait(t, 10*time.Second))
}

// Shutdown while a C producer holds a claim it has not yet checked the flag
// after (E4): it gives the claim up and reports closed, and a Go consumer
// sees PENDING (empty, not closed) until then, closed after.
func TestShutdownDuringCClaim(t *testing.T) {
	q, p := newQueue(t, 4, 32)
	c := startC(t, []string{"MPMC_C_STOP=enqueue-claimed"}, "sleep-enqueue", p, "raced")
	c.waitStopped(t)
	t.Cleanup(func() { c.cmd.Process.Signal(syscall.SIGCONT) })
	require.NoError(t, q.Shutdown())
	buf := make([]byte, 32)
	_, err := q.TryDequeue(buf)
	require.ErrorIs(t, err, mpmc.ErrEmpty, "a claimed head is pending, never closed")
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGCONT))
	assert.Equal(t, "closed\n", c.wait(t, 10*time.Second), "the producer read the flag after its claim")
	_, err = q.TryDequeue(buf)
	require.ErrorIs(t, err, mpmc.ErrClosed)
	assert.Equal(t, uint64(1), q.Stats().SkippedSlots, "the claim was given up as a skipped slot")
}

// A Go Reservation claimed before Shutdown is still delivered: a C consumer
// waits at the claimed head (PENDING is never CLOSED), takes the message
// once it is committed, and only then sees closed.
func TestCDrainWaitsForGoReservationAcrossShutdown(t *testing.T) {
	q, p := newQueue(t, 4, 32)
	g := holdReservation(t, p)
	require.NoError(t, q.Shutdown())
	c := startC(t, nil, "drain", p)
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, c.stdout.String(), "the C consumer must wait at the claimed head, not report closed")
	g.commitReservation(t)
	assert.Equal(t, "got late\nclosed\n", c.wait(t, 10*time.Second))
}
