// Package cli is the command mpmc-bridge: flags, signals, the verdict line
// and the benchmark. It is a package of its own so that the tests can run
// it in child processes of their own binary.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/bridge"
)

// Exit codes: 0 with an "OK: " verdict, ExitFail with "FAIL: ".
const (
	ExitOK   = 0
	ExitFail = 2
)

// Usage is the command's synopsis.
const Usage = `usage:
  mpmc-bridge -dir out -queue PATH -subject SUBJ -stream NAME [flags]
      consume the local queue PATH, publish each message to SUBJ (stream NAME)
  mpmc-bridge -dir in -queue PATH -stream NAME -durable NAME [flags]
      read the durable consumer NAME of stream NAME into the local queue PATH
  mpmc-bridge -bench [-messages N] [-producers P] [-reps R]
      messages per second: producers -> queue A -> out -> JetStream -> in ->
      queue B, next to the same producers publishing to JetStream directly
      (an embedded server in a temporary directory)

Ends with one verdict line on stdout, "OK: ..." (exit 0) or "FAIL: ..." (exit 2).
Stops cleanly on SIGINT or SIGTERM, and when the local queue is shut down.
`

// Main runs the command with args (without the program name) and returns
// its exit code. SIGINT and SIGTERM stop it cleanly.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, stdout, stderr)
}

// Run is Main with the stop given as ctx.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("mpmc-bridge", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, Usage, "\nflags:\n"); fl.PrintDefaults() }
	var (
		dir        = fl.String("dir", "", "direction: out (local queue -> JetStream) or in (JetStream -> local queue)")
		queue      = fl.String("queue", "", "path of the local queue segment (e.g. /dev/shm/orders)")
		natsURL    = fl.String("url", "nats://127.0.0.1:4222", "NATS server URL")
		subject    = fl.String("subject", "", "out: subject to publish to; in: optional filter subject")
		stream     = fl.String("stream", "", "JetStream stream name")
		durable    = fl.String("durable", "", "in: durable consumer name")
		window     = fl.Int("window", 64, "out: publishes awaiting acknowledgement at once (messages held in the queue; 16 per handle)")
		batch      = fl.Int("batch", 256, "in: messages per EnqueueBatch")
		ackWait    = fl.Duration("ack-wait", 30*time.Second, "in: JetStream AckWait of the durable consumer")
		seqHeader  = fl.Bool("seq-header", false, "in: prefix each local message with its stream sequence (8 bytes, big-endian) for deduplication")
		idPrefix   = fl.String("id-prefix", "", "out: prefix of every message ID (tells hosts apart)")
		allowLoss  = fl.Bool("allow-loss", false, "out: run on a queue created without Config.Redeliver (a killed bridge loses the messages it held)")
		connect    = fl.Duration("connect-timeout", 10*time.Second, "give up if the server does not answer within this")
		embedded   = fl.String("embedded", "", "demo: run an embedded JetStream server with its store in this directory, listening on -url's host and port")
		create     = fl.Bool("create", false, "demo: create the stream (taking -subject) and the queue (with Redeliver) if missing")
		capacity   = fl.Int("capacity", 4096, "with -create: queue capacity")
		slotSize   = fl.Int("slot-size", 1024, "with -create: queue slot size")
		benchMode  = fl.Bool("bench", false, "run the benchmark instead")
		benchMsgs  = fl.Int("messages", 200_000, "bench: messages per run")
		benchProds = fl.Int("producers", 4, "bench: producers")
		benchReps  = fl.Int("reps", 3, "bench: repetitions (medians are reported)")
		benchSize  = fl.Int("size", 64, "bench: message size in bytes")
	)
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitFail
	}
	logger := newLogger(stderr)
	if *benchMode {
		return Bench(ctx, BenchConfig{Messages: *benchMsgs, Producers: *benchProds, Reps: *benchReps, Size: *benchSize, Window: *window, Batch: *batch}, stdout, stderr)
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stdout, "FAIL: bridge %s: %s\n", *dir, fmt.Sprintf(format, args...))
		return ExitFail
	}
	if *dir != "out" && *dir != "in" {
		fl.Usage()
		return fail("-dir must be out or in, not %q", *dir)
	}
	if *queue == "" || *stream == "" || (*dir == "out" && *subject == "") || (*dir == "in" && *durable == "") {
		fl.Usage()
		return fail("missing flags: -queue, -stream, and -subject (out) or -durable (in)")
	}
	if *embedded != "" {
		s, err := startEmbedded(*natsURL, *embedded)
		if err != nil {
			return fail("embedded server: %v", err)
		}
		defer s.Shutdown()
		logger.logf("embedded JetStream server at %s, store %s", s.ClientURL(), *embedded)
	}
	nc, err := bridge.Dial(ctx, *natsURL, *connect, "mpmc-bridge "+*dir+" "+*queue)
	if err != nil {
		return fail("%v (the local queue is untouched)", err)
	}
	defer nc.Close()
	if *create {
		if err := createStream(ctx, nc, *stream, *subject); err != nil {
			return fail("create stream: %v", err)
		}
		q, err := mpmc.Create(*queue, mpmc.Config{Capacity: *capacity, SlotSize: *slotSize, Redeliver: true})
		if err == nil {
			q.Close()
		} else if !errors.Is(err, fs.ErrExist) {
			return fail("create queue: %v", err)
		}
	}

	if *dir == "out" {
		var c bridge.OutCounters
		err := bridge.Out(ctx, nc, bridge.OutConfig{
			Queue: *queue, Subject: *subject, Stream: *stream, Window: *window,
			IDPrefix: *idPrefix, AllowLoss: *allowLoss, Logf: logger.logf,
		}, &c)
		counts := fmt.Sprintf("%d forwarded, %d re-sent, %d duplicates dropped", c.Forwarded.Load(), c.Resent.Load(), c.Duplicates.Load())
		if n := c.Redelivered.Load(); n > 0 {
			counts += fmt.Sprintf(", %d redelivered by the queue", n)
		}
		if n := c.QueueDropped.Load(); n > 0 {
			counts += fmt.Sprintf(", %d dropped by the queue's recovery", n)
		}
		if err != nil {
			return fail("%v (%s)", err, counts)
		}
		fmt.Fprintf(stdout, "OK: bridge out, %s\n", counts)
		return ExitOK
	}
	var c bridge.InCounters
	err = bridge.In(ctx, nc, bridge.InConfig{
		Queue: *queue, Stream: *stream, Durable: *durable, FilterSubject: *subject,
		Batch: *batch, AckWait: *ackWait, SeqHeader: *seqHeader, Logf: logger.logf,
	}, &c)
	counts := fmt.Sprintf("%d forwarded, %d redelivered by JetStream", c.Forwarded.Load(), c.Redelivered.Load())
	if err != nil {
		return fail("%v (%s)", err, counts)
	}
	if n := c.TooLarge.Load(); n > 0 {
		fmt.Fprintf(stdout, "FAIL: bridge in, %s, %d too large for the queue (terminated, left in stream %s at sequences %v)\n", counts, n, *stream, c.TooLargeSeqs())
		return ExitFail
	}
	fmt.Fprintf(stdout, "OK: bridge in, %s\n", counts)
	return ExitOK
}

// logger writes timestamped lines to stderr, from any goroutine.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func newLogger(w io.Writer) *logger { return &logger{w: w} }

func (l *logger) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "mpmc-bridge: %s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// startEmbedded starts a JetStream server storing in dir, listening on the
// host and port of rawURL (port 0 or -1: a random one).
func startEmbedded(rawURL, dir string) (*server.Server, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, err
	}
	return StartServer(host, port, dir)
}

// StartServer starts an embedded NATS server with JetStream, its store in
// dir, listening on host:port (port -1: a random one), and waits until it
// accepts clients.
func StartServer(host string, port int, dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
	})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("server on %s:%d not ready after 10s", host, port)
	}
	return s, nil
}

// createStream creates stream name taking subject, unless it exists.
func createStream(ctx context.Context, nc *nats.Conn, name, subject string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.Stream(ctx, name); err == nil {
		return nil
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	return err
}
