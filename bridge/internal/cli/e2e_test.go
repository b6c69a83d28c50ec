package cli

// End-to-end tests: real processes (this test binary, re-executed with
// MPMC_BRIDGE_TEST_ROLE set) for the producers, consumers and bridges, and
// an embedded JetStream server in this process, storing in a temporary
// directory and listening on 127.0.0.1 with a random port.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/bridge"
)

const (
	roleEnv   = "MPMC_BRIDGE_TEST_ROLE"
	msgSize   = 64              // bytes of a test message
	childWait = 3 * time.Minute // longest a child may run after it was asked to stop
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Exit(runChild(role, args))
	}
	os.Exit(m.Run())
}

// runChild is a child process: the bridge command, a producer or a
// consumer.
func runChild(role string, args []string) int {
	switch role {
	case "bridge":
		return Main(args, os.Stdout, os.Stderr)
	case "produce": // path producer count
		p, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		if err := produceChild(args[0], p, n); err != nil {
			fmt.Fprintln(os.Stdout, "FAIL: produce:", err)
			return 2
		}
		fmt.Fprintf(os.Stdout, "OK: produced %d\n", n)
		return 0
	case "consume": // path outfile
		n, err := consumeChild(args[0], args[1])
		if err != nil {
			fmt.Fprintln(os.Stdout, "FAIL: consume:", err)
			return 2
		}
		fmt.Fprintf(os.Stdout, "OK: consumed %d\n", n)
		return 0
	}
	fmt.Fprintln(os.Stdout, "FAIL: unknown role", role)
	return 2
}

// A test message: producer (4 bytes), sequence (8 bytes), padding.
func produceChild(path string, p, n int) error {
	q, err := mpmc.Open(path)
	if err != nil {
		return err
	}
	defer q.Close()
	ctx := context.Background()
	const batch = 32
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, msgSize)
	}
	for s := 0; s < n; {
		k := min(batch, n-s)
		for i := range k {
			binary.LittleEndian.PutUint32(bufs[i], uint32(p))
			binary.LittleEndian.PutUint64(bufs[i][4:], uint64(s+i))
		}
		if _, err := q.EnqueueBatch(ctx, bufs[:k]); err != nil {
			return err
		}
		s += k
	}
	return nil
}

// consumeChild dequeues until the queue is shut down and drained, and writes
// one record per message: stream sequence (the bridge's header), producer,
// sequence.
func consumeChild(path, out string) (int, error) {
	q, err := mpmc.Open(path)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, q.SlotSize())
	}
	sizes := make([]int, len(bufs))
	var rec [20]byte
	total := 0
	w := &bytes.Buffer{}
	for {
		n, err := q.DequeueBatch(context.Background(), bufs, sizes)
		if errors.Is(err, mpmc.ErrClosed) {
			break
		}
		if err != nil {
			return total, err
		}
		for i := range n {
			m := bufs[i][:sizes[i]]
			if len(m) != bridge.SeqHeaderLen+msgSize {
				return total, fmt.Errorf("message of %d bytes", len(m))
			}
			copy(rec[:8], m[:8])
			copy(rec[8:], m[8:20])
			w.Write(rec[:])
		}
		total += n
		if w.Len() > 1<<20 {
			if _, err := f.Write(w.Bytes()); err != nil {
				return total, err
			}
			w.Reset()
		}
	}
	_, err = f.Write(w.Bytes())
	return total, err
}

// record is what a consumer received.
type record struct {
	streamSeq uint64
	producer  uint32
	seq       uint64
}

func readRecords(t *testing.T, file string) []record {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rs []record
	for ; len(b) >= 20; b = b[20:] {
		rs = append(rs, record{binary.BigEndian.Uint64(b), binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint64(b[12:])})
	}
	return rs
}

// child is a child process of the test.
type child struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
	killed         bool // by the test, with SIGKILL
}

func start(t *testing.T, name, role string, args ...string) *child {
	t.Helper()
	c := &child{name: name, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	c.cmd.Env = append(os.Environ(), roleEnv+"="+role)
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// wait waits for the child to exit and returns its exit code and verdict
// (the last line of its stdout); it fails the test after d.
func (c *child) wait(t *testing.T, d time.Duration) (int, string) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		c.cmd.Process.Signal(syscall.SIGQUIT)
		<-c.done
		t.Fatalf("%s did not exit within %v; stderr:\n%s", c.name, d, tail(c.stderr.String()))
	}
	code := c.cmd.ProcessState.ExitCode()
	lines := strings.Split(strings.TrimSpace(c.stdout.String()), "\n")
	return code, lines[len(lines)-1]
}

// expect waits for the child and checks its exit code, the start of its
// verdict, and that its stderr shows no race or panic.
func (c *child) expect(t *testing.T, code int, prefix string) string {
	t.Helper()
	got, verdict := c.wait(t, childWait)
	c.checkStderr(t)
	if got != code || !strings.HasPrefix(verdict, prefix) {
		t.Fatalf("%s: exit %d, verdict %q; want exit %d, %q...\nstderr:\n%s", c.name, got, verdict, code, prefix, tail(c.stderr.String()))
	}
	return verdict
}

func (c *child) checkStderr(t *testing.T) {
	t.Helper()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if strings.Contains(c.stderr.String(), bad) {
			t.Errorf("%s: stderr has %q:\n%s", c.name, bad, tail(c.stderr.String()))
		}
	}
}

// kill SIGKILLs the child and waits for it.
func (c *child) kill(t *testing.T) {
	t.Helper()
	c.killed = true
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.checkStderr(t)
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		// It had exited by itself: that must have been a success.
		if c.cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("%s exited %d before the kill:\n%s%s", c.name, c.cmd.ProcessState.ExitCode(), c.stdout.String(), tail(c.stderr.String()))
		}
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// natsEnv is the embedded server, restartable on the same port and store.
type natsEnv struct {
	t     *testing.T
	store string
	port  int
	s     *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
}

func newNATS(t *testing.T) *natsEnv {
	t.Helper()
	e := &natsEnv{t: t, store: filepath.Join(t.TempDir(), "js"), port: -1}
	e.startServer()
	e.port = e.s.Addr().(*net.TCPAddr).Port
	nc, err := bridge.Dial(context.Background(), e.url(), 10*time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.nc = nc
	e.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); e.s.Shutdown(); e.s.WaitForShutdown() })
	return e
}

func (e *natsEnv) startServer() {
	var err error
	for range 50 { // the port may still be held for a moment after a restart
		if e.s, err = StartServer("127.0.0.1", e.port, e.store); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatal(err)
}

func (e *natsEnv) restart() {
	e.s.Shutdown()
	e.s.WaitForShutdown()
	e.startServer()
}

func (e *natsEnv) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", e.port) }

func (e *natsEnv) stream(name, subject string) {
	e.t.Helper()
	if _, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
		e.t.Fatal(err)
	}
}

// until polls cond (errors from the server, restarting, count as false)
// until it holds, failing the test after d.
func until(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok && err == nil {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v (last error %v)", what, d, last)
}

func (e *natsEnv) streamMsgs(name string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// drained reports whether the durable consumer has nothing pending or
// unacknowledged.
func (e *natsEnv) drained(stream, durable string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, stream, durable)
	if err != nil {
		return false, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.NumPending == 0 && info.NumAckPending == 0, nil
}

func segment(t *testing.T, name string, cfg mpmc.Config) (string, *mpmc.Queue) {
	t.Helper()
	path := fmt.Sprintf("/dev/shm/mpmc-bridge-test-%d-%s-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"), name)
	os.Remove(path)
	q, err := mpmc.Create(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(); os.Remove(path) })
	return path, q
}

// messages is the size of a run: the environment variable env, or def.
func messages(t *testing.T, env string, def int) int {
	if s := os.Getenv(env); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q", env, s)
		}
		return n
	}
	return def
}

// twoHosts is the setup of the end-to-end tests: queue A, stream T, queue
// B (with room for the bridge's sequence header), the consumers on B.
type twoHosts struct {
	e              *natsEnv
	pathA, pathB   string
	qa, qb         *mpmc.Queue
	producers, per int
	consumers      []*child
	outFiles       []string
}

const (
	stream  = "T"
	subject = "t.a"
	durable = "in"
)

func newTwoHosts(t *testing.T, producers, per, capA int) *twoHosts {
	h := &twoHosts{e: newNATS(t), producers: producers, per: per}
	h.e.stream(stream, subject)
	h.pathA, h.qa = segment(t, "a", mpmc.Config{Capacity: capA, SlotSize: msgSize, Redeliver: true})
	h.pathB, h.qb = segment(t, "b", mpmc.Config{Capacity: 4096, SlotSize: msgSize + bridge.SeqHeaderLen})
	dir := t.TempDir()
	for i := range 2 {
		f := filepath.Join(dir, fmt.Sprintf("consumer%d", i))
		h.outFiles = append(h.outFiles, f)
		h.consumers = append(h.consumers, start(t, fmt.Sprintf("consumer %d", i), "consume", h.pathB, f))
	}
	return h
}

func (h *twoHosts) out(t *testing.T) *child {
	return start(t, "bridge out", "bridge", "-dir", "out", "-queue", h.pathA, "-url", h.e.url(), "-subject", subject, "-stream", stream, "-window", "64")
}

func (h *twoHosts) in(t *testing.T) *child {
	return start(t, "bridge in", "bridge", "-dir", "in", "-queue", h.pathB, "-url", h.e.url(), "-stream", stream, "-durable", durable, "-seq-header", "-batch", "256")
}

func (h *twoHosts) produce(t *testing.T) []*child {
	var ps []*child
	for p := range h.producers {
		ps = append(ps, start(t, fmt.Sprintf("producer %d", p), "produce", h.pathA, strconv.Itoa(p), strconv.Itoa(h.per)))
	}
	return ps
}

// finish stops what is left once every message is in queue A: Shutdown of
// A stops the out-bridge (which must say OK), SIGTERM the in-bridge once
// the consumer is drained, Shutdown of B ends the consumers. It returns
// the verdicts of the two bridges and what each consumer received.
func (h *twoHosts) finish(t *testing.T, out, in *child) (string, string, [][]record) {
	t.Helper()
	// Shut A down only once the out-bridge has joined it, since the Open
	// of its first handle recovers what a killed predecessor held, and the
	// queue drops a message it would redeliver after Shutdown. It opens
	// its 4 handles (window 64) one after the other: with the second, the
	// first one's recovery is done.
	until(t, time.Minute, "out-bridge joined queue A", func() (bool, error) {
		info, err := mpmc.Inspect(h.pathA)
		if err != nil {
			return false, err
		}
		handles := 0
		for _, p := range info.Participants {
			if p.Alive && !p.Joining && p.Pid == out.cmd.Process.Pid {
				handles++
			}
		}
		return handles >= 2, nil
	})
	h.qa.Shutdown()
	outVerdict := out.expect(t, 0, "OK: bridge out, ")
	until(t, 5*time.Minute, "consumer drained", func() (bool, error) { return h.e.drained(stream, durable) })
	in.cmd.Process.Signal(syscall.SIGTERM)
	inVerdict := in.expect(t, 0, "OK: bridge in, ")
	h.qb.Shutdown()
	var got [][]record
	for i, c := range h.consumers {
		c.expect(t, 0, "OK: consumed ")
		got = append(got, readRecords(t, h.outFiles[i]))
	}
	return outVerdict, inVerdict, got
}

var countRe = regexp.MustCompile(`(\d+) (forwarded|re-sent|duplicates dropped|redelivered by JetStream|redelivered by the queue|dropped by the queue's recovery)`)

// counts parses a bridge's verdict.
func counts(verdict string) map[string]uint64 {
	m := map[string]uint64{}
	for _, g := range countRe.FindAllStringSubmatch(verdict, -1) {
		n, _ := strconv.ParseUint(g[1], 10, 64)
		m[g[2]] = n
	}
	return m
}

// TestTwoHostsExactlyOnce: producers on queue A, bridge out to a stream,
// bridge in from it to queue B, consumers on B. With nothing killed, every
// message arrives exactly once, each producer's in order at each consumer,
// the stream holds each once, and the bridges' counters say so.
//
// One million messages (about 90 s on a 2-core VM); under the race
// detector 100,000. MPMC_BRIDGE_MESSAGES sets another number.
func TestTwoHostsExactlyOnce(t *testing.T) {
	def := 1_000_000
	if raceEnabled {
		def = 100_000
	}
	total := messages(t, "MPMC_BRIDGE_MESSAGES", def)
	const producers = 4
	per := total / producers
	total = per * producers
	h := newTwoHosts(t, producers, per, 4096)
	in := h.in(t)
	out := h.out(t)
	for _, p := range h.produce(t) {
		p.expect(t, 0, "OK: produced ")
	}
	outV, inV, got := h.finish(t, out, in)
	t.Logf("%s\n%s", outV, inV)
	if c := counts(outV); c["forwarded"] != uint64(total) || c["re-sent"] != 0 || c["duplicates dropped"] != 0 {
		t.Errorf("out verdict %q: want %d forwarded, none re-sent or dropped", outV, total)
	}
	if c := counts(inV); c["forwarded"] != uint64(total) || c["redelivered by JetStream"] != 0 {
		t.Errorf("in verdict %q: want %d forwarded, none redelivered", inV, total)
	}
	if n, err := h.e.streamMsgs(stream); err != nil || n != uint64(total) {
		t.Errorf("stream holds %d messages (%v), want %d", n, err, total)
	}
	seen := make([][]bool, producers)
	for i := range seen {
		seen[i] = make([]bool, per)
	}
	streamSeqs := map[uint64]bool{}
	n := 0
	for ci, rs := range got {
		last := make([]int64, producers)
		for i := range last {
			last[i] = -1
		}
		for _, r := range rs {
			if int(r.producer) >= producers || r.seq >= uint64(per) {
				t.Fatalf("consumer %d: message %+v was never produced", ci, r)
			}
			if seen[r.producer][r.seq] {
				t.Fatalf("consumer %d: message %+v arrived twice", ci, r)
			}
			seen[r.producer][r.seq] = true
			if int64(r.seq) <= last[r.producer] {
				t.Fatalf("consumer %d: producer %d's message %d after %d", ci, r.producer, r.seq, last[r.producer])
			}
			last[r.producer] = int64(r.seq)
			if streamSeqs[r.streamSeq] {
				t.Fatalf("stream sequence %d twice", r.streamSeq)
			}
			streamSeqs[r.streamSeq] = true
			n++
		}
	}
	if n != total {
		t.Fatalf("received %d messages, want %d", n, total)
	}
}

// TestKillsAndServerRestart: the same two hosts while the out-bridge and
// the in-bridge are SIGKILLed at random moments and restarted, and the
// server is restarted on its store. Nothing acknowledged is lost (except
// what queue A's recovery reports it dropped, at most one message a kill of
// the out-bridge); the stream holds every
// message once (re-sends were dropped as duplicates by message ID); a
// message reaches B more than once only with the same stream sequence,
// redelivered by JetStream after an in-bridge stopped between Enqueue and
// Ack, and no more often than the kills and restarts allow.
//
// 50,000 messages (MPMC_BRIDGE_KILL_MESSAGES sets another number); at least
// 3 kills of each bridge and 1 server restart, more while the producers
// run.
func TestKillsAndServerRestart(t *testing.T) {
	total := messages(t, "MPMC_BRIDGE_KILL_MESSAGES", 50_000)
	const producers = 4
	per := total / producers
	total = per * producers
	// Queue A has room for every message, so that redelivery of what a
	// killed bridge held never meets a full queue (it is best effort
	// there: see mpmc.Config.Redeliver).
	capA := 1
	for capA < total {
		capA *= 2
	}
	h := newTwoHosts(t, producers, per, capA)
	in := h.in(t)
	out := h.out(t)
	prods := h.produce(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	var outKills, inKills, restarts int
	prodsDone := func() bool {
		for _, p := range prods {
			select {
			case <-p.done:
			default:
				return false
			}
		}
		return true
	}
	for i := 0; !prodsDone() || outKills < 3 || inKills < 3 || restarts < 1; i++ {
		if i > 200 {
			t.Fatal("chaos did not end after 200 rounds")
		}
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		switch x := rng.IntN(10); {
		case x < 4:
			out.kill(t)
			outKills++
			out = h.out(t)
		case x < 8:
			in.kill(t)
			inKills++
			in = h.in(t)
		case restarts < 2:
			h.e.restart()
			restarts++
		}
	}
	for _, p := range prods {
		p.expect(t, 0, "OK: produced ")
	}
	outV, inV, got := h.finish(t, out, in)
	t.Logf("%d out kills, %d in kills, %d server restarts\nlast out: %s\nlast in: %s", outKills, inKills, restarts, outV, inV)

	stats := h.qa.Stats()
	explained := stats.RecoveredReads - stats.Redelivered
	// Which stream sequence carried each message, and how often it came.
	type key struct {
		p uint32
		s uint64
	}
	seqOf := map[key]uint64{}
	times := map[uint64]int{}
	for _, rs := range got {
		for _, r := range rs {
			if int(r.producer) >= producers || r.seq >= uint64(per) {
				t.Fatalf("message %+v was never produced", r)
			}
			k := key{r.producer, r.seq}
			if s, ok := seqOf[k]; ok && s != r.streamSeq {
				t.Errorf("message %+v is in the stream twice, at sequences %d and %d: a re-send was not deduplicated", r, s, r.streamSeq)
			}
			seqOf[k] = r.streamSeq
			times[r.streamSeq]++
		}
	}
	lost := uint64(total - len(seqOf))
	dups := 0
	for _, n := range times {
		dups += n - 1
	}
	t.Logf("%d messages, %d lost (queue A dropped %d in recovery: RecoveredReads %d, Redelivered %d), %d duplicates at B",
		total, lost, explained, stats.RecoveredReads, stats.Redelivered, dups)
	if lost > explained {
		t.Errorf("%d messages lost, only %d explained by queue A's recovery", lost, explained)
	}
	// The out-bridge holds at most one message the queue redelivered
	// before: a kill can have at most that one dropped by recovery.
	if explained > uint64(outKills) {
		t.Errorf("queue A's recovery dropped %d messages in %d out-bridge kills: more than one a kill", explained, outKills)
	}
	if n, err := h.e.streamMsgs(stream); err != nil || n != uint64(len(seqOf)) {
		t.Errorf("stream holds %d messages (%v), want %d: one per distinct message", n, err, len(seqOf))
	}
	// Each in-bridge kill or server restart can leave at most MaxAckPending
	// (4 x 256) delivered and unacknowledged messages to deliver again.
	if bound := (inKills + restarts) * 4 * 256; dups > bound {
		t.Errorf("%d duplicates at B, more than the %d in-bridge kills and %d restarts explain (%d)", dups, inKills, restarts, bound)
	}
}

// TestBadInput: an unreachable server, a missing stream, a subject of
// another stream and a queue without Redeliver make the bridge fail at
// once with a clear verdict, leaving the local queue as it was.
func TestBadInput(t *testing.T) {
	e := newNATS(t)
	e.stream(stream, subject)
	e.stream("OTHER", "t.other")
	pathA, qa := segment(t, "a", mpmc.Config{Capacity: 64, SlotSize: msgSize, Redeliver: true})
	pathN, qn := segment(t, "noredeliver", mpmc.Config{Capacity: 64, SlotSize: msgSize})
	for _, q := range []*mpmc.Queue{qa, qn} {
		for i := range 10 {
			if err := q.TryEnqueue([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + l.Addr().String()
	l.Close()
	cases := []struct {
		name    string
		args    []string
		verdict string
	}{
		{"out unreachable", []string{"-dir", "out", "-queue", pathA, "-url", dead, "-connect-timeout", "1s", "-subject", subject, "-stream", stream},
			"FAIL: bridge out: bridge: NATS server unreachable: " + dead},
		{"in unreachable", []string{"-dir", "in", "-queue", pathA, "-url", dead, "-connect-timeout", "1s", "-stream", stream, "-durable", "d"},
			"FAIL: bridge in: bridge: NATS server unreachable: " + dead},
		{"out missing stream", []string{"-dir", "out", "-queue", pathA, "-url", e.url(), "-subject", subject, "-stream", "NOPE"},
			`FAIL: bridge out: bridge: stream not found: "NOPE"`},
		{"in missing stream", []string{"-dir", "in", "-queue", pathA, "-url", e.url(), "-stream", "NOPE", "-durable", "d"},
			`FAIL: bridge in: bridge: stream not found: "NOPE"`},
		{"out subject of another stream", []string{"-dir", "out", "-queue", pathA, "-url", e.url(), "-subject", "t.other", "-stream", stream},
			`FAIL: bridge out: bridge: stream not found: subject "t.other" is bound to stream "OTHER", not "T"`},
		{"out subject of no stream", []string{"-dir", "out", "-queue", pathA, "-url", e.url(), "-subject", "nowhere", "-stream", stream},
			`FAIL: bridge out: bridge: stream not found: no stream takes subject "nowhere"`},
		{"out without Redeliver", []string{"-dir", "out", "-queue", pathN, "-url", e.url(), "-subject", subject, "-stream", stream},
			"FAIL: bridge out: bridge: queue was created without Config.Redeliver: " + pathN},
		{"bad direction", []string{"-dir", "sideways", "-queue", pathA}, `FAIL: bridge sideways: -dir must be out or in`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start(t, c.name, "bridge", c.args...).expect(t, ExitFail, c.verdict)
		})
	}
	for _, q := range []*mpmc.Queue{qa, qn} {
		if n := q.Len(); n != 10 {
			t.Errorf("%s holds %d messages after the failures, want the 10 it had", q.Path(), n)
		}
	}
	if n, err := e.streamMsgs(stream); err != nil || n != 0 {
		t.Errorf("stream holds %d messages (%v), want none", n, err)
	}
}

// TestTooLarge: a stream message longer than queue B's slot size is
// terminated (not delivered again, still in the stream) and reported with
// its stream sequence, while the messages around it go through in order;
// the verdict is FAIL. An in-bridge also stops by itself, OK, when its
// queue is shut down.
func TestTooLarge(t *testing.T) {
	e := newNATS(t)
	e.stream(stream, subject)
	pathB, qb := segment(t, "b", mpmc.Config{Capacity: 64, SlotSize: 40})
	ctx := context.Background()
	for _, m := range []string{"first", strings.Repeat("x", 33), "third"} { // 8 + 33 > 40
		if _, err := e.js.Publish(ctx, subject, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	in := start(t, "bridge in", "bridge", "-dir", "in", "-queue", pathB, "-url", e.url(), "-stream", stream, "-durable", durable, "-seq-header")
	until(t, time.Minute, "consumer drained", func() (bool, error) { return e.drained(stream, durable) })
	in.cmd.Process.Signal(syscall.SIGTERM)
	in.expect(t, ExitFail, "FAIL: bridge in, 2 forwarded, 0 redelivered by JetStream, 1 too large for the queue (terminated, left in stream T at sequences [2])")
	if !strings.Contains(in.stderr.String(), "stream T sequence 2 is 41 bytes, slot size 40: terminated, left in the stream") {
		t.Errorf("stderr does not name the message:\n%s", in.stderr.String())
	}
	buf := make([]byte, 40)
	for i, want := range []string{"first", "third"} {
		n, err := qb.TryDequeue(buf)
		if err != nil || string(buf[bridge.SeqHeaderLen:n]) != want || binary.BigEndian.Uint64(buf) != uint64(2*i+1) {
			t.Fatalf("message %d: %q (%v), want %q at stream sequence %d", i, buf[:max(n, 0)], err, want, 2*i+1)
		}
	}
	if _, err := qb.TryDequeue(buf); !errors.Is(err, mpmc.ErrEmpty) {
		t.Fatalf("queue B: %v, want empty", err)
	}
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetMsg(ctx, 2); err != nil || len(m.Data) != 33 {
		t.Fatalf("the too large message is not left in the stream: %v", err)
	}
	c, err := e.js.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil || info.NumRedelivered != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != 3 {
		t.Fatalf("consumer: %+v (%v): want everything acknowledged or terminated, nothing redelivered", info, err)
	}

	// Restarted, it finds nothing more; Shutdown of B stops it, OK.
	in = start(t, "bridge in", "bridge", "-dir", "in", "-queue", pathB, "-url", e.url(), "-stream", stream, "-durable", durable, "-seq-header")
	if _, err := e.js.Publish(ctx, subject, []byte("fourth")); err != nil {
		t.Fatal(err)
	}
	n, err := qb.Dequeue(ctx, buf)
	if err != nil || string(buf[bridge.SeqHeaderLen:n]) != "fourth" {
		t.Fatalf("after restart: %q (%v), want fourth", buf[:max(n, 0)], err)
	}
	qb.Shutdown()
	in.expect(t, 0, "OK: bridge in, 1 forwarded, 0 redelivered by JetStream")
}

// TestStopOnSignal: SIGTERM and SIGINT stop idle bridges cleanly, with an
// OK verdict and exit 0, and leave the queues as they were.
func TestStopOnSignal(t *testing.T) {
	e := newNATS(t)
	e.stream(stream, subject)
	pathA, _ := segment(t, "a", mpmc.Config{Capacity: 64, SlotSize: msgSize, Redeliver: true})
	pathB, qb := segment(t, "b", mpmc.Config{Capacity: 64, SlotSize: msgSize})
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		out := start(t, "bridge out", "bridge", "-dir", "out", "-queue", pathA, "-url", e.url(), "-subject", subject, "-stream", stream)
		in := start(t, "bridge in", "bridge", "-dir", "in", "-queue", pathB, "-url", e.url(), "-stream", stream, "-durable", durable)
		// Until the in-bridge made its consumer, and a message went through.
		until(t, time.Minute, "consumer created", func() (bool, error) { return e.drained(stream, durable) })
		qa, err := mpmc.Open(pathA)
		if err != nil {
			t.Fatal(err)
		}
		if err := qa.TryEnqueue([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		qa.Close()
		buf := make([]byte, msgSize)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		n, err := qb.Dequeue(ctx, buf)
		cancel()
		if err != nil || string(buf[:n]) != "hello" {
			t.Fatalf("through the bridges: %q (%v), want hello", buf[:max(n, 0)], err)
		}
		out.cmd.Process.Signal(sig)
		in.cmd.Process.Signal(sig)
		out.expect(t, 0, "OK: bridge out, 1 forwarded, 0 re-sent, 0 duplicates dropped")
		in.expect(t, 0, "OK: bridge in, 1 forwarded, 0 redelivered by JetStream")
	}
	if qb.Len() != 0 {
		t.Fatalf("queue B holds %d messages", qb.Len())
	}
}
