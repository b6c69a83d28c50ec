package main

// cloudwego/shmipc-go v0.2.0, the Go peer, across two processes: a client
// process (session manager, one session, one stream) and a server process
// (a unix listener, shmipc.Server, AcceptStream), 64-byte messages, each
// written into the stream's buffer and flushed on its own.
//
// Two configurations: "tuned" is how shmipc-go's own bench_test.go sets it
// up (IO queue 65535, 256 MiB of shared memory, buffer slices of the message
// size + 256 bytes for 70%, memfd); "default" is shmipc.DefaultConfig() (IO
// queue 8192, 32 MiB, 8 KiB slices or more, files under /dev/shm). Only the
// paths (unique per run), the log output (discarded), the handshake timeout
// (30 s, as its examples raise it) and, for the stream, flow control differ
// from those.
//
// Streaming: the consumer acknowledges every 1024 messages and the
// producer keeps at most half the IO queue's capacity unacknowledged. Without that the
// producer fills the IO queue, and Flush then sleeps 10 ms per retry, which
// would measure the sleep, not the transfer. Each run reports how often the
// queue was full anyway and how many writes fell back to the socket (a
// stream that falls back once stays on the socket).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	shmipc "github.com/cloudwego/shmipc-go"
)

const (
	mechShmipcTuned   = "shmipc-go tuned"
	mechShmipcDefault = "shmipc-go default"
	shmipcAckEvery    = 1024 // messages per acknowledgement
	shmipcDoneAck     = ^uint64(0)
	shmipcNoPrint     = 5 // shmipc-go's levelNoPrint
)

// shmipcArgs are the arguments of both shmipc-go children.
type shmipcArgs struct {
	Tuned    bool
	Ping     bool   // ping-pong, else streaming
	Sock     string // abstract unix socket the server listens on
	Prefix   string // path prefix of the shared-memory files
	Duration time.Duration
	Samples  int
	Warmup   int
}

// shmipcResult is what a shmipc-go child reports.
type shmipcResult struct {
	Count     int64 // messages sent or received
	StampNs   int64 // CLOCK_MONOTONIC at the last receipt (server) or end of sending
	QueueFull uint64
	FallbackW uint64 // writes that went over the socket
	FallbackR uint64
	Ping      ppResult
}

// The two ends.
var (
	shmipcServerRole = newRole("shmipc-server", shmipcServer)
	shmipcClientRole = newRole("shmipc-client", shmipcClient)
)

func shmipcConfig(a shmipcArgs) *shmipc.Config {
	c := shmipc.DefaultConfig()
	if a.Tuned {
		c.QueueCap = 65535
		c.ConnectionWriteTimeout = time.Second
		c.ShareMemoryBufferCap = 256 << 20
		c.MemMapType = shmipc.MemMapTypeMemFd
		c.BufferSliceSizes = []*shmipc.SizePercentPair{{Size: pingSize + 256, Percent: 70}, {Size: 16 << 10, Percent: 20}, {Size: 64 << 10, Percent: 10}}
	}
	// Its examples allow the handshake 100 s; 1 s (the default) fails on
	// a loaded machine.
	c.InitializeTimeout = 30 * time.Second
	c.ShareMemoryPathPrefix = a.Prefix
	c.QueuePath = a.Prefix + "_queue"
	c.LogOutput = io.Discard
	shmipc.SetLogLevel(shmipcNoPrint)
	return c
}

// shmipcEnd is a stream with 64-byte message helpers.
type shmipcEnd struct{ st *shmipc.Stream }

func (e shmipcEnd) send(msg []byte) error {
	if _, err := e.st.BufferWriter().WriteBytes(msg); err != nil {
		return err
	}
	return e.st.Flush(false)
}

// recv reads n bytes into buf and releases them.
func (e shmipcEnd) recv(buf []byte) error {
	r := e.st.BufferReader()
	b, err := r.ReadBytes(len(buf))
	if err != nil {
		return err
	}
	copy(buf, b)
	r.ReleasePreviousRead()
	return nil
}

func (e shmipcEnd) sendAck(v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return e.send(b[:])
}

func (e shmipcEnd) recvAck() (uint64, error) {
	var b [8]byte
	err := e.recv(b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

func (e shmipcEnd) metrics(r *shmipcResult) {
	_, st, _ := e.st.Session().GetMetrics()
	r.QueueFull, r.FallbackW, r.FallbackR = st.QueueFullErrorCount, st.FallbackWriteCount, st.FallbackReadCount
}

func shmipcServer(c *childIO, a shmipcArgs) (any, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: a.Sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	type accepted struct {
		s   *shmipc.Session
		st  *shmipc.Stream
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		s, err := shmipc.Server(conn, shmipcConfig(a))
		if err != nil {
			acc <- accepted{err: fmt.Errorf("shmipc.Server: %w", err)}
			return
		}
		st, err := s.AcceptStream()
		acc <- accepted{s, st, err}
	}()
	if err := c.ready(); err != nil {
		return nil, err
	}
	got := <-acc
	if got.err != nil {
		return nil, got.err
	}
	defer got.s.Close()
	defer got.st.Close()
	e := shmipcEnd{got.st}
	buf := make([]byte, pingSize)
	var r shmipcResult
	for ; ; r.Count++ {
		if err := e.recv(buf); err != nil {
			return nil, fmt.Errorf("receive #%d: %w", r.Count, err)
		}
		if buf[0] == stopByte {
			break
		}
		switch {
		case a.Ping:
			err = e.send(buf)
		case (r.Count+1)%shmipcAckEvery == 0:
			err = e.sendAck(uint64(r.Count + 1))
		}
		if err != nil {
			return nil, fmt.Errorf("answer #%d: %w", r.Count, err)
		}
		if r.Count&63 == 0 {
			r.StampNs = nanotime()
		}
	}
	r.StampNs = nanotime()
	if !a.Ping {
		if err := e.sendAck(shmipcDoneAck); err != nil {
			return nil, err
		}
	}
	e.metrics(&r)
	return r, nil
}

func shmipcClient(c *childIO, a shmipcArgs) (any, error) {
	conf := shmipc.DefaultSessionManagerConfig()
	conf.Config = shmipcConfig(a)
	conf.Network, conf.Address = "unix", a.Sock
	conf.SessionNum = 1
	sm, err := shmipc.NewSessionManager(conf)
	if err != nil {
		return nil, fmt.Errorf("NewSessionManager: %w", err)
	}
	defer sm.Close()
	st, err := sm.GetStream()
	if err != nil {
		return nil, fmt.Errorf("GetStream: %w", err)
	}
	defer st.Close()
	e := shmipcEnd{st}
	if err := c.ready(); err != nil {
		return nil, err
	}
	var r shmipcResult
	if a.Ping {
		r.Ping, err = timeRoundTrips(a.Warmup, a.Samples, 0, func(msg, buf []byte) error {
			if err := e.send(msg); err != nil {
				return err
			}
			return e.recv(buf)
		})
	} else {
		// Half the IO queue in flight at most: it never fills.
		r.Count, err = shmipcStream(e, a.Duration, int64(conf.QueueCap/2))
	}
	if err != nil {
		return nil, err
	}
	r.StampNs = nanotime()
	if err := e.send(stopMsg()); err != nil {
		return nil, err
	}
	for !a.Ping {
		v, err := e.recvAck()
		if err != nil {
			return nil, fmt.Errorf("wait for the end: %w", err)
		}
		if v == shmipcDoneAck {
			break
		}
	}
	e.metrics(&r)
	return r, nil
}

// shmipcStream sends 64-byte messages for d, at most window of them
// unacknowledged, and returns how many it sent.
func shmipcStream(e shmipcEnd, d time.Duration, window int64) (int64, error) {
	msg := make([]byte, pingSize)
	var n, acked int64
	for deadline := nanotime() + int64(d); nanotime() < deadline; {
		for range 256 {
			binary.LittleEndian.PutUint64(msg[8:], uint64(n)) // msg[0] stays clear of stopByte
			if err := e.send(msg); err != nil {
				return n, fmt.Errorf("send #%d: %w", n, err)
			}
			n++
			for n-acked >= window {
				v, err := e.recvAck()
				if err != nil {
					return n, fmt.Errorf("acknowledgement: %w", err)
				}
				acked = int64(v)
			}
		}
	}
	return n, nil
}

// shmipcOutcome is one shmipc-go run.
type shmipcOutcome struct {
	MsgsPerSec float64 // streaming
	Messages   int64
	Ping       ppResult // ping-pong
	Client     shmipcResult
	Server     shmipcResult
}

// runShmipc runs one shmipc-go measurement: streaming for dur, or samples
// round trips.
func runShmipc(ctx context.Context, mech string, ping bool, dur time.Duration, samples int) (out shmipcOutcome, err error) {
	name := newName("shmipc")
	prefix := filepath.Join("/dev/shm", name)
	removeAll := func() {
		files, _ := filepath.Glob(prefix + "*")
		for _, f := range files {
			os.Remove(f)
		}
	}
	register(prefix, removeAll)
	defer done(prefix)
	a := shmipcArgs{Tuned: mech == mechShmipcTuned, Ping: ping, Sock: "@" + name, Prefix: prefix, Duration: dur, Samples: samples, Warmup: max(samples/10, 10)}
	budget := dur + time.Duration(samples)*50*time.Microsecond + 40*time.Second
	ctx, cancel := context.WithTimeout(ctx, budget+10*time.Second)
	defer cancel()
	// The server listens before it is ready; the client connects before.
	var g group
	defer func() { g.killAll() }()
	for _, r := range []role[shmipcArgs]{shmipcServerRole, shmipcClientRole} {
		p, err := r.spawn(ctx, a, spawnOpts{watchdog: budget})
		if err != nil {
			return out, err
		}
		g = append(g, p)
		if err := p.awaitReady(); err != nil {
			return out, err
		}
	}
	server, client := g[0], g[1]
	t0, err := g.startAll()
	if err != nil {
		return out, err
	}
	// The server first: if the client fails, the server fails too (its
	// session ends), and the server's error is the more telling one.
	if err := server.finish(&out.Server); err != nil {
		client.kill()
		return out, fmt.Errorf("%w; client stderr: %q", err, client.stderr.String())
	}
	if err := client.finish(&out.Client); err != nil {
		return out, err
	}
	out.Ping = out.Client.Ping
	if ping {
		if want := int64(a.Samples + a.Warmup); out.Server.Count != want {
			return out, fmt.Errorf("%s: server echoed %d of %d", mech, out.Server.Count, want)
		}
		return out, nil
	}
	if out.Server.Count != out.Client.Count {
		return out, fmt.Errorf("%s: %d messages sent, %d received", mech, out.Client.Count, out.Server.Count)
	}
	out.Messages = out.Server.Count
	if secs := float64(out.Server.StampNs-t0) / 1e9; secs > 0 {
		out.MsgsPerSec = float64(out.Messages) / secs
	} else {
		return out, errors.New("shmipc-go stream: no time passed")
	}
	return out, nil
}
