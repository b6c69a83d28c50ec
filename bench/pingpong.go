package main

// Ping-pong round trips between two processes: the client sends a 64-byte
// message, the server sends it back, and the client times the round trip.
// In the "both asleep" variants each side busy-works for a gap (longer than
// the queue's spin budget) before it sends, so that its peer has given up
// spinning and sleeps on the futex by the time the message lands; the gap is
// subtracted from the round trip.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

const (
	pingSize = 64
	stopByte = 0xFF
	stopSeq  = ^uint32(0)
)

// errStop is what a server's receive returns for the client's stop message.
var errStop = errors.New("stop")

// ppArgs are the arguments of a ping-pong child.
type ppArgs struct {
	Mech    string
	SetSpin bool          // call SetSpin(Spin) on the queue handles
	Spin    time.Duration // spin budget when SetSpin
	Req     string        // mpmc: client-to-server queue; futex: the word file
	Resp    string        // mpmc: server-to-client queue
	Samples int
	Warmup  int
	Gap     time.Duration
}

// ppResult is what the client reports: round-trip times in nanoseconds.
type ppResult struct {
	Samples int
	P50     float64
	P90     float64
	P99     float64
	Min     float64
	Mean    float64
}

// pingEnd is one side of a ping-pong mechanism.
type pingEnd interface {
	send(msg []byte) error
	recv(buf []byte) error // errStop for the stop message
	stop() error
	close()
}

// openPingEnd opens the client's (client true) or the server's end.
func openPingEnd(a ppArgs, client bool) (pingEnd, error) {
	switch a.Mech {
	case mechQueue:
		req, err := mpmc.Open(a.Req)
		if err != nil {
			return nil, err
		}
		resp, err := mpmc.Open(a.Resp)
		if err != nil {
			req.Close()
			return nil, err
		}
		if a.SetSpin {
			req.SetSpin(a.Spin)
			resp.SetSpin(a.Spin)
		}
		if client {
			return &queuePing{out: req, in: resp}, nil
		}
		return &queuePing{out: resp, in: req}, nil
	case mechFutex:
		ping, pong, unmap, err := mapFutexWords(a.Req)
		if err != nil {
			return nil, err
		}
		if client {
			return &futexPing{out: ping, in: pong, unmap: unmap}, nil
		}
		return &futexPing{out: pong, in: ping, unmap: unmap}, nil
	case mechPipe:
		// Client: 3 writes to the server, 4 reads from it; server the
		// reverse.
		if client {
			return fdPing{w: inheritedFD, r: inheritedFD + 1}, nil
		}
		return fdPing{r: inheritedFD, w: inheritedFD + 1}, nil
	case mechUnixSock:
		return fdPing{r: inheritedFD, w: inheritedFD}, nil
	case mechEventfdQueue, mechRawEventfd: // eventfd.go
		return openEventfdPing(a, client)
	}
	return nil, fmt.Errorf("unknown mechanism %q", a.Mech)
}

// mechFutex is the raw futex ping-pong.
const mechFutex = "futex"

type queuePing struct{ out, in *mpmc.Queue }

func (p *queuePing) send(msg []byte) error { return p.out.Enqueue(context.Background(), msg) }
func (p *queuePing) stop() error           { return p.send(stopMsg()) }
func (p *queuePing) close()                { p.out.Close(); p.in.Close() }
func (p *queuePing) recv(buf []byte) error {
	n, err := p.in.Dequeue(context.Background(), buf)
	return checkPing(n, buf, err)
}

// checkPing checks a received ping of n bytes in buf: errStop for the stop
// message.
func checkPing(n int, buf []byte, err error) error {
	switch {
	case err != nil:
		return err
	case n != pingSize:
		return fmt.Errorf("got %d bytes, want %d", n, pingSize)
	case buf[0] == stopByte:
		return errStop
	}
	return nil
}

// stopMsg is the stop message.
func stopMsg() []byte {
	m := make([]byte, pingSize)
	m[0] = stopByte
	return m
}

// futexPing carries a counter in a futex word each way, and always sleeps
// in FUTEX_WAIT and always calls FUTEX_WAKE: no spinning, no waiter
// bookkeeping.
type futexPing struct {
	out, in *atomic.Uint32
	sent    uint32
	seen    uint32
	unmap   func()
}

func (p *futexPing) send([]byte) error {
	p.sent++
	p.out.Store(p.sent)
	futexWake(p.out)
	return nil
}

func (p *futexPing) stop() error {
	p.out.Store(stopSeq)
	futexWake(p.out)
	return nil
}

func (p *futexPing) recv([]byte) error {
	for {
		v := p.in.Load()
		if v != p.seen {
			p.seen = v
			if v == stopSeq {
				return errStop
			}
			return nil
		}
		futexWait(p.in, v)
	}
}

func (p *futexPing) close() { p.unmap() }

// fdPing is a pipe pair (r != w) or a SOCK_SEQPACKET socket (r == w).
type fdPing struct{ r, w int }

func (p fdPing) send(msg []byte) error {
	return fdEnd{fd: p.w, size: pingSize, stream: p.r != p.w}.send(msg)
}

func (p fdPing) recv(buf []byte) error {
	n, err := fdEnd{fd: p.r, size: pingSize, stream: p.r != p.w}.recv(buf)
	return checkPing(n, buf, err)
}

func (p fdPing) stop() error { return p.send(stopMsg()) }

func (p fdPing) close() {
	unix.Close(p.r)
	if p.w != p.r {
		unix.Close(p.w)
	}
}

// The two ends of a ping-pong.
var (
	pingServerRole = newRole("pp-server", pingServer)
	pingClientRole = newRole("pp-client", pingClient)
)

func pingServer(c *childIO, a ppArgs) (any, error) {
	e, err := openReady(c, func() (pingEnd, error) { return openPingEnd(a, false) }, pingEnd.close)
	if err != nil {
		return nil, err
	}
	defer e.close()
	buf := make([]byte, pingSize)
	for n := 0; ; n++ {
		err := e.recv(buf)
		if err == errStop {
			return struct{ Echoed int }{n}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("receive #%d: %w", n, err)
		}
		busyWait(a.Gap)
		if err := e.send(buf); err != nil {
			return nil, fmt.Errorf("send #%d: %w", n, err)
		}
	}
}

func pingClient(c *childIO, a ppArgs) (any, error) {
	e, err := openReady(c, func() (pingEnd, error) { return openPingEnd(a, true) }, pingEnd.close)
	if err != nil {
		return nil, err
	}
	defer e.close()
	res, err := timeRoundTrips(a.Warmup, a.Samples, a.Gap, func(msg, buf []byte) error {
		if err := e.send(msg); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if err := e.recv(buf); err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, e.stop()
}

// timeRoundTrips times warmup+samples round trips (rt sends msg and
// receives the answer into buf), busy-waiting gap after each, and
// summarizes the last samples, gap subtracted, in nanoseconds.
func timeRoundTrips(warmup, samples int, gap time.Duration, rt func(msg, buf []byte) error) (ppResult, error) {
	msg, buf := make([]byte, pingSize), make([]byte, pingSize)
	rtt := make([]float64, 0, samples)
	for i := range warmup + samples {
		t0 := nanotime()
		if err := rt(msg, buf); err != nil {
			return ppResult{}, fmt.Errorf("round trip #%d: %w", i, err)
		}
		t1 := nanotime()
		if i >= warmup {
			rtt = append(rtt, float64(t1-t0-int64(gap)))
		}
		busyWait(gap)
	}
	return summarize(rtt), nil
}

// summarize sorts rtt and returns its count, percentiles, minimum and mean.
func summarize(rtt []float64) ppResult {
	if len(rtt) == 0 {
		return ppResult{}
	}
	slices.Sort(rtt)
	var sum float64
	for _, v := range rtt {
		sum += v
	}
	return ppResult{
		Samples: len(rtt),
		P50:     percentile(rtt, 50),
		P90:     percentile(rtt, 90),
		P99:     percentile(rtt, 99),
		Min:     rtt[0],
		Mean:    sum / float64(len(rtt)),
	}
}

// ppCase is one ping-pong configuration.
type ppCase struct {
	Name    string // as shown in results
	Mech    string
	SetSpin bool
	Spin    time.Duration
	Asleep  bool // both sides busy-work for the gap before sending
}

// ppOutcome is one ping-pong run.
type ppOutcome struct {
	ppResult
	Sleeps  uint64 // queue futex sleeps, both queues, both sides (mpmc only)
	Wakeups uint64 // queue FUTEX_WAKE calls, both queues (mpmc only)
}

// runPing runs one ping-pong measurement.
func runPing(ctx context.Context, pc ppCase, samples int, gap time.Duration) (out ppOutcome, err error) {
	a := ppArgs{Mech: pc.Mech, SetSpin: pc.SetSpin, Spin: pc.Spin, Samples: samples, Warmup: max(samples/10, 10)}
	if pc.Asleep {
		a.Gap = gap
	}
	budget := time.Duration(a.Samples+a.Warmup)*(2*a.Gap+200*time.Microsecond) + 30*time.Second
	ctx, cancel := context.WithTimeout(ctx, budget+10*time.Second)
	defer cancel()
	var clientFiles, serverFiles []*os.File
	var stats func() (uint64, uint64)
	handOver := func() error { return nil }
	switch pc.Mech {
	case mechQueue:
		var qs [2]*mpmc.Queue
		for i, p := range []*string{&a.Req, &a.Resp} {
			q, remove, err := newQueue("ping", 64, pingSize)
			if err != nil {
				return out, err
			}
			defer remove()
			qs[i], *p = q, q.Path()
		}
		stats = func() (s, w uint64) {
			for _, q := range qs {
				st := q.Stats()
				s += st.ConsumerSleeps + st.ProducerSleeps
				w += st.ConsumerWakeups + st.ProducerWakeups
			}
			return s, w
		}
	case mechFutex:
		if a.Req, err = createFutexFile(); err != nil {
			return out, err
		}
		defer done(a.Req)
	case mechPipe:
		var p1, p2 [2]int
		if err := unix.Pipe2(p1[:], unix.O_CLOEXEC); err != nil {
			return out, err
		}
		if err := unix.Pipe2(p2[:], unix.O_CLOEXEC); err != nil {
			unix.Close(p1[0])
			unix.Close(p1[1])
			return out, err
		}
		clientFiles = []*os.File{os.NewFile(uintptr(p1[1]), "c-w"), os.NewFile(uintptr(p2[0]), "c-r")}
		serverFiles = []*os.File{os.NewFile(uintptr(p1[0]), "s-r"), os.NewFile(uintptr(p2[1]), "s-w")}
	case mechUnixSock:
		sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return out, err
		}
		clientFiles = []*os.File{os.NewFile(uintptr(sv[0]), "c")}
		serverFiles = []*os.File{os.NewFile(uintptr(sv[1]), "s")}
	case mechEventfdQueue, mechRawEventfd: // eventfd.go
		var cleanup func()
		if clientFiles, serverFiles, handOver, cleanup, err = eventfdPingSetup(&a); err != nil {
			return out, err
		}
		defer cleanup()
	default:
		return out, fmt.Errorf("unknown mechanism %q", pc.Mech)
	}
	closeFiles := func() {
		for _, f := range append(clientFiles, serverFiles...) {
			f.Close()
		}
	}
	defer closeFiles()
	server, err := pingServerRole.spawn(ctx, a, spawnOpts{files: serverFiles, watchdog: budget})
	if err != nil {
		return out, err
	}
	defer server.kill()
	client, err := pingClientRole.spawn(ctx, a, spawnOpts{files: clientFiles, watchdog: budget})
	if err != nil {
		return out, err
	}
	defer client.kill()
	closeFiles()
	if err := handOver(); err != nil {
		return out, err
	}
	if _, err := (group{server, client}).launch(); err != nil {
		return out, err
	}
	if err := client.finish(&out.ppResult); err != nil {
		return out, err
	}
	var echoed struct{ Echoed int }
	if err := server.finish(&echoed); err != nil {
		return out, err
	}
	if echoed.Echoed != a.Samples+a.Warmup {
		return out, fmt.Errorf("%s: server echoed %d of %d", pc.Name, echoed.Echoed, a.Samples+a.Warmup)
	}
	if stats != nil {
		out.Sleeps, out.Wakeups = stats()
	}
	return out, nil
}
