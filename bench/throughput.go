package main

// Cross-process throughput: P producer processes and C consumer processes
// stream fixed-size messages through one mechanism for a set duration; the
// rate is the number of messages received over the time from the start
// signal to the last receipt.

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

// queueCapacity is the capacity, in messages, of the queue and of the
// alternatives that can be sized in messages.
const queueCapacity = 1024

// tputArgs are the arguments of a throughput child.
type tputArgs struct {
	Mech     string
	Size     int
	Path     string
	Duration time.Duration
	SetSpin  bool // call SetSpin(Spin) on the queue handle
	Spin     time.Duration
}

// tputChildResult is what a throughput child reports.
type tputChildResult struct {
	Count   int64 // messages sent or received
	StartNs int64 // CLOCK_MONOTONIC at the start signal
	StampNs int64 // CLOCK_MONOTONIC at the last receipt (or the end of sending)
}

// tputCase names one throughput configuration.
type tputCase struct {
	Mech    string
	Size    int
	P, C    int
	SetSpin bool // queue only: SetSpin(Spin) in every child
	Spin    time.Duration
}

func (tc tputCase) key() string {
	return fmt.Sprintf("%s/%dB/%dx%d", tc.Mech, tc.Size, tc.P, tc.C)
}

// tputOutcome is one run of a tputCase.
type tputOutcome struct {
	MsgsPerSec float64
	Messages   int64
	Seconds    float64
	Stats      mpmc.Stats // queue counters at the end (mpmc only)
	MQCapacity int        // message-queue capacity granted (posix-mq only)
}

// The two ends of a throughput run.
var (
	tputProdRole = newRole("tput-prod", tputProducer)
	tputConsRole = newRole("tput-cons", tputConsumer)
)

// openEndReady opens a child's end and a message buffer, then says ready
// and waits for the start signal.
func openEndReady(c *childIO, a tputArgs, producer bool) (end, []byte, error) {
	e, err := openEnd(a, producer)
	if err != nil {
		return nil, nil, err
	}
	if err := c.ready(); err != nil {
		e.close()
		return nil, nil, err
	}
	return e, make([]byte, a.Size), nil
}

func tputProducer(c *childIO, a tputArgs) (any, error) {
	s, msg, err := openEndReady(c, a, true)
	if err != nil {
		return nil, err
	}
	start := nanotime()
	deadline := start + int64(a.Duration)
	var n int64
	for nanotime() < deadline {
		for range 256 {
			binary.LittleEndian.PutUint64(msg, uint64(n))
			if err := s.send(msg); err != nil {
				return nil, fmt.Errorf("send #%d: %w", n, err)
			}
			n++
		}
	}
	end := nanotime()
	if err := s.close(); err != nil {
		return nil, err
	}
	return tputChildResult{Count: n, StartNs: start, StampNs: end}, nil
}

func tputConsumer(c *childIO, a tputArgs) (any, error) {
	r, buf, err := openEndReady(c, a, false)
	if err != nil {
		return nil, err
	}
	start := nanotime()
	var n, stamp int64
	for {
		m, err := r.recv(buf)
		if err == errEOS {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("receive #%d: %w", n, err)
		}
		if m != a.Size {
			return nil, fmt.Errorf("message #%d is %d bytes, want %d", n, m, a.Size)
		}
		n++
		// Reading the clock costs about as much as a message; do it
		// every 64 messages.
		if n&63 == 0 {
			stamp = nanotime()
		}
	}
	if stamp == 0 {
		stamp = nanotime()
	}
	if err := r.close(); err != nil {
		return nil, err
	}
	return tputChildResult{Count: n, StartNs: start, StampNs: stamp}, nil
}

// tputSetup is the parent's side of one mechanism for one run.
type tputSetup struct {
	prodFiles, consFiles []*os.File
	path                 string
	afterSpawn           func()       // drop the parent's copies of descriptors
	afterProducers       func() error // signal the end of the stream
	stats                func() mpmc.Stats
	teardown             func()
	mqCap                int
}

// handFiles gives prod to the producers and cons to the consumers; the
// parent closes its copies once they are spawned, or at teardown.
func (st *tputSetup) handFiles(prod, cons *os.File) {
	st.prodFiles, st.consFiles = []*os.File{prod}, []*os.File{cons}
	st.afterSpawn = func() { prod.Close(); cons.Close() }
	st.teardown = st.afterSpawn
}

func setupTput(tc tputCase) (*tputSetup, error) {
	st := &tputSetup{afterSpawn: func() {}, afterProducers: func() error { return nil }, teardown: func() {}}
	switch tc.Mech {
	case mechQueue:
		q, remove, err := newQueue("tput", queueCapacity, tc.Size)
		if err != nil {
			return nil, err
		}
		st.path, st.afterProducers, st.stats, st.teardown = q.Path(), q.Shutdown, q.Stats, remove
	case mechQueueSpin, mechQueueBatch, mechZeroCopy, mechCopy:
		// Only the children differ: the handles spin, or make bulk calls.
		tc.Mech = mechQueue
		return setupTput(tc)
	case mechRef:
		q, remove, err := newRef("tput-ref", queueCapacity)
		if err != nil {
			return nil, err
		}
		st.path, st.teardown = q.path, remove
		st.afterProducers = func() error { q.shutdown(); return nil }
	case mechPipe:
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, err
		}
		st.handFiles(os.NewFile(uintptr(p[1]), "pipe-w"), os.NewFile(uintptr(p[0]), "pipe-r"))
	case mechUnixSock:
		sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		st.handFiles(os.NewFile(uintptr(sv[0]), "sock-p"), os.NewFile(uintptr(sv[1]), "sock-c"))
	case mechMQ:
		fd, granted, name, err := mqCreate(tc.Size, queueCapacity)
		if err != nil {
			return nil, err
		}
		st.path, st.mqCap = name, granted
		st.afterProducers = func() error {
			for range tc.C {
				if err := mqSend(fd, nil); err != nil {
					return err
				}
			}
			return nil
		}
		st.teardown = func() { unix.Close(fd); done(name) }
	default:
		return nil, fmt.Errorf("unknown mechanism %q", tc.Mech)
	}
	return st, nil
}

// wrapFunc returns the command prefix to run a child under (nil for none).
type wrapFunc func(role string, i int) []string

// runTput runs one throughput measurement.
func runTput(ctx context.Context, tc tputCase, dur time.Duration, wrap wrapFunc) (out tputOutcome, err error) {
	st, err := setupTput(tc)
	if err != nil {
		return out, fmt.Errorf("%s: set up: %w", tc.key(), err)
	}
	defer st.teardown()
	ctx, cancel := context.WithTimeout(ctx, dur+60*time.Second)
	defer cancel()
	args := tputArgs{Mech: tc.Mech, Size: tc.Size, Path: st.path, Duration: dur, SetSpin: tc.SetSpin, Spin: tc.Spin}
	var cons, prods group
	defer func() { cons.killAll(); prods.killAll() }()
	prodRole, consRole := tputRoles(tc.Mech)
	spawnN := func(g *group, r role[tputArgs], n int, files []*os.File) error {
		for i := range n {
			o := spawnOpts{files: files, watchdog: dur + 50*time.Second}
			if wrap != nil {
				o.wrap = wrap(r.name, i)
			}
			p, err := r.spawn(ctx, args, o)
			if err != nil {
				return err
			}
			*g = append(*g, p)
		}
		return nil
	}
	if err := spawnN(&cons, consRole, tc.C, st.consFiles); err != nil {
		return out, err
	}
	if err := spawnN(&prods, prodRole, tc.P, st.prodFiles); err != nil {
		return out, err
	}
	st.afterSpawn()
	all := append(append(group{}, cons...), prods...)
	t0, err := all.launch()
	if err != nil {
		return out, err
	}
	var sent, got, last int64
	for _, p := range prods {
		var r tputChildResult
		if err := p.finish(&r); err != nil {
			return out, err
		}
		sent += r.Count
	}
	if err := st.afterProducers(); err != nil {
		return out, fmt.Errorf("%s: end of stream: %w", tc.key(), err)
	}
	for _, p := range cons {
		var r tputChildResult
		if err := p.finish(&r); err != nil {
			return out, err
		}
		got += r.Count
		last = max(last, r.StampNs)
	}
	if got != sent {
		return out, fmt.Errorf("%s: %d messages sent, %d received", tc.key(), sent, got)
	}
	out.Messages = got
	out.Seconds = float64(last-t0) / 1e9
	if out.Seconds > 0 {
		out.MsgsPerSec = float64(got) / out.Seconds
	}
	if st.stats != nil {
		out.Stats = st.stats()
	}
	out.MQCapacity = st.mqCap
	return out, nil
}

// tputKey is the key of the throughput case of mech, size and shape.
func tputKey(mech string, size, p, c int) string {
	return tputCase{Mech: mech, Size: size, P: p, C: c}.key()
}
