package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/bridge"
)

// BenchConfig is the benchmark's workload.
type BenchConfig struct {
	Messages  int // per run, split between the producers
	Producers int
	Reps      int
	Size      int // message size in bytes
	Window    int // Out's window, and the direct producers' async window
	Batch     int // In's batch
}

// Bench measures, Reps times in alternation, messages per second from the
// start of Producers producers until the last message is consumed:
//
//   - bridged: producers enqueue to queue A; Out publishes to a stream; In
//     reads it into queue B; a consumer dequeues from B;
//   - direct: the same producers publish to a stream themselves (async,
//     with message IDs, a window each), a pull consumer reads and acks.
//
// Everything runs in this process against an embedded server storing in a
// temporary directory (each producer and bridge has a handle or connection
// of its own, as separate processes would). It prints one line per run and
// the medians.
func Bench(ctx context.Context, cfg BenchConfig, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stdout, "FAIL: bench: %s\n", fmt.Sprintf(format, args...))
		return ExitFail
	}
	if cfg.Messages < cfg.Producers || cfg.Producers < 1 || cfg.Reps < 1 || cfg.Size < 16 {
		return fail("need messages >= producers >= 1, reps >= 1, size >= 16")
	}
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	fmt.Fprintf(stdout, "workload: %d messages of %d bytes, %d producers, out window %d, in batch %d\n", cfg.Messages, cfg.Size, cfg.Producers, cfg.Window, cfg.Batch)
	var bridged, direct, directPub []float64
	for rep := range cfg.Reps {
		kinds := []string{"bridged", "direct"}
		if rep%2 == 1 {
			slices.Reverse(kinds)
		}
		for _, kind := range kinds {
			r, err := runBench(ctx, kind, cfg)
			if err != nil {
				return fail("%s, rep %d: %v", kind, rep+1, err)
			}
			rate := float64(cfg.Messages) / r.total.Seconds()
			fmt.Fprintf(stdout, "rep %d %-8s %8.0f msg/s end to end (%v)", rep+1, kind, rate, r.total.Round(time.Millisecond))
			if kind == "bridged" {
				bridged = append(bridged, rate)
			} else {
				direct = append(direct, rate)
				pr := float64(cfg.Messages) / r.published.Seconds()
				directPub = append(directPub, pr)
				fmt.Fprintf(stdout, ", %8.0f msg/s published and acked", pr)
			}
			fmt.Fprintln(stdout)
		}
	}
	fmt.Fprintf(stdout, "OK: bench, %d msgs x %d reps: bridged A->NATS->B median %.0f msg/s; direct to NATS and consumed median %.0f msg/s (published and acked %.0f msg/s)\n",
		cfg.Messages, cfg.Reps, median(bridged), median(direct), median(directPub))
	return ExitOK
}

type benchResult struct{ total, published time.Duration }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// machine describes this machine: cores, processor model, kernel.
func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("nproc %d, %s, Linux %s, %s", runtime.NumCPU(), model, kernel, runtime.Version())
}

// benchEnv is an embedded server in a temporary directory, with a
// connection to it and the stream BENCH.
type benchEnv struct {
	url  string
	nc   *nats.Conn
	stop func()
}

// newBenchEnv starts the server, connects to it as name and creates the
// stream BENCH on subject: what every run does before it measures. stop
// undoes all of it.
func newBenchEnv(ctx context.Context, subject, name string) (*benchEnv, error) {
	dir, err := os.MkdirTemp("", "mpmc-bridge-bench-")
	if err != nil {
		return nil, err
	}
	s, err := StartServer("127.0.0.1", -1, filepath.Join(dir, "js"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e := &benchEnv{url: s.ClientURL(), stop: func() { s.Shutdown(); s.WaitForShutdown(); os.RemoveAll(dir) }}
	if e.nc, err = e.conn(ctx, name); err == nil {
		err = createStream(ctx, e.nc, "BENCH", subject)
		if err != nil {
			e.nc.Close()
		}
	}
	if err != nil {
		e.stop()
		return nil, err
	}
	stopServer := e.stop
	e.stop = func() { e.nc.Close(); stopServer() }
	return e, nil
}

// reported returns the first error a producer or a bridge reported, in
// place of err: the cause rather than its symptom. It returns err when
// none was reported.
func reported(errs <-chan error, err error) error {
	select {
	case e := <-errs:
		return e
	default:
		return err
	}
}

func (e *benchEnv) conn(ctx context.Context, name string) (*nats.Conn, error) {
	return bridge.Dial(ctx, e.url, 5*time.Second, name)
}

func produce(cfg BenchConfig, p int, each func(msg []byte) error) error {
	msg := make([]byte, cfg.Size)
	n := cfg.Messages / cfg.Producers
	if p < cfg.Messages%cfg.Producers {
		n++
	}
	for i := range n {
		msg[0], msg[1] = byte(p), byte(i)
		if err := each(msg); err != nil {
			return err
		}
	}
	return nil
}

// runBench makes one measured run of kind ("bridged" or "direct"), with a
// server of its own and a time limit; the run calls cancel to stop its
// goroutines when one of them fails.
func runBench(ctx context.Context, kind string, cfg BenchConfig) (benchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	subject, name, run := "bench.a", "bench setup", benchBridged
	if kind == "direct" {
		subject, name, run = "bench.d", "bench consumer", benchDirect
	}
	env, err := newBenchEnv(ctx, subject, name)
	if err != nil {
		return benchResult{}, err
	}
	defer env.stop()
	return run(ctx, cancel, env, cfg)
}

func benchBridged(ctx context.Context, cancel context.CancelFunc, env *benchEnv, cfg BenchConfig) (benchResult, error) {
	pa := fmt.Sprintf("/dev/shm/mpmc-bridge-bench-%d-a", os.Getpid())
	pb := fmt.Sprintf("/dev/shm/mpmc-bridge-bench-%d-b", os.Getpid())
	qa, err := mpmc.Create(pa, mpmc.Config{Capacity: 4096, SlotSize: cfg.Size, Redeliver: true})
	if err != nil {
		return benchResult{}, err
	}
	defer os.Remove(pa)
	defer qa.Close()
	qb, err := mpmc.Create(pb, mpmc.Config{Capacity: 4096, SlotSize: cfg.Size})
	if err != nil {
		return benchResult{}, err
	}
	defer os.Remove(pb)
	defer qb.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 4+cfg.Producers)
	ncOut, err := env.conn(ctx, "bench out")
	if err != nil {
		return benchResult{}, err
	}
	defer ncOut.Close()
	ncIn, err := env.conn(ctx, "bench in")
	if err != nil {
		return benchResult{}, err
	}
	defer ncIn.Close()
	bctx, stopBridges := context.WithCancel(ctx)
	defer func() { stopBridges(); wg.Wait() }()
	wg.Go(func() {
		if err := bridge.Out(bctx, ncOut, bridge.OutConfig{Queue: pa, Subject: "bench.a", Stream: "BENCH", Window: cfg.Window}, nil); err != nil {
			errs <- fmt.Errorf("out: %w", err)
			cancel()
		}
	})
	wg.Go(func() {
		if err := bridge.In(bctx, ncIn, bridge.InConfig{Queue: pb, Stream: "BENCH", Durable: "bench", Batch: cfg.Batch}, nil); err != nil {
			errs <- fmt.Errorf("in: %w", err)
			cancel()
		}
	})

	start := time.Now()
	var pwg sync.WaitGroup
	for p := range cfg.Producers {
		pwg.Go(func() {
			q, err := mpmc.Open(pa)
			if err != nil {
				errs <- err
				return
			}
			defer q.Close()
			if err := produce(cfg, p, func(m []byte) error { return q.Enqueue(ctx, m) }); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	buf := make([]byte, cfg.Size)
	for range cfg.Messages {
		if _, err := qb.Dequeue(ctx, buf); err != nil {
			return benchResult{}, reported(errs, err)
		}
	}
	total := time.Since(start)
	pwg.Wait()
	if err := reported(errs, nil); err != nil {
		return benchResult{}, err
	}
	return benchResult{total: total}, nil
}

func benchDirect(ctx context.Context, cancel context.CancelFunc, env *benchEnv, cfg BenchConfig) (benchResult, error) {
	js, err := jetstream.New(env.nc)
	if err != nil {
		return benchResult{}, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "BENCH", jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4 * cfg.Batch})
	if err != nil {
		return benchResult{}, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * cfg.Batch))
	if err != nil {
		return benchResult{}, err
	}
	defer it.Stop()

	start := time.Now()
	var pwg sync.WaitGroup
	errs := make(chan error, cfg.Producers)
	var published time.Duration
	var pubMu sync.Mutex
	for p := range cfg.Producers {
		pwg.Go(func() {
			pc, err := env.conn(ctx, fmt.Sprintf("bench producer %d", p))
			if err != nil {
				errs <- err
				return
			}
			defer pc.Close()
			pjs, err := jetstream.New(pc, jetstream.WithPublishAsyncMaxPending(cfg.Window))
			if err != nil {
				errs <- err
				return
			}
			i := 0
			err = produce(cfg, p, func(m []byte) error {
				i++
				_, err := pjs.PublishAsync("bench.d", append([]byte(nil), m...), jetstream.WithMsgID(fmt.Sprintf("direct-%d-%d", p, i)), jetstream.WithStallWait(10*time.Second))
				return err
			})
			if err != nil {
				errs <- err
				cancel()
				return
			}
			select {
			case <-pjs.PublishAsyncComplete():
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			}
			pubMu.Lock()
			published = max(published, time.Since(start))
			pubMu.Unlock()
		})
	}
	for range cfg.Messages {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return benchResult{}, reported(errs, err)
		}
		_ = m.Ack()
	}
	total := time.Since(start)
	pwg.Wait()
	if err := reported(errs, nil); err != nil {
		return benchResult{}, err
	}
	if published == 0 {
		return benchResult{}, errors.New("producers did not finish")
	}
	return benchResult{total: total, published: published}, nil
}
