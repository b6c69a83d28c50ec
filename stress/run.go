package main

// `stress run`: create a fresh segment, start the producer and consumer
// processes, let them run, shut the queue down, collect, verify, report.

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/schollz/progressbar/v3"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// runConfig is what the flags of `stress run` ask for.
type runConfig struct {
	Producers int           `json:"producers"`
	Consumers int           `json:"consumers"`
	Messages  uint64        `json:"messages"` // 0: no count limit (then Duration > 0)
	Duration  time.Duration `json:"duration_ns"`
	Size      int           `json:"size"`
	Capacity  int           `json:"capacity"`
	Path      string        `json:"path"`
	Seed      uint64        `json:"seed"`
	Spin      time.Duration `json:"spin_ns"`
	Timeout   time.Duration `json:"timeout_ns"`

	json     bool
	progress bool
}

// readyTimeout bounds how long children may take to start and open the
// queue.
const readyTimeout = 30 * time.Second

// reapTimeout bounds the wait for killed children to be reaped.
const reapTimeout = 10 * time.Second

// autoTimeout is the -timeout used when none is given: generous, so that
// only a run that is stuck, not one that is slow, overruns it.
func autoTimeout(cfg runConfig) time.Duration {
	return 2*time.Minute + 2*cfg.Duration + time.Duration(cfg.Messages)*20*time.Microsecond
}

// producerCount is how many of the messages producer i sends.
func producerCount(total uint64, producers, i int) uint64 {
	n := total / uint64(producers)
	if uint64(i) < total%uint64(producers) {
		n++
	}
	return n
}

// runner holds the state of one run.
type runner struct {
	cfg  runConfig
	rep  *Report
	sigs chan os.Signal
	clk  *monoClock

	path    string
	created bool // we created path and must remove it
	q       *mpmc.Queue
	ver     *verify.Verifier
	streams []*recordStream // one per consumer

	producers []*child
	consumers []*child
	exits     chan *child
	goNs      int64
	goTime    time.Time

	shutdownAt       time.Time
	interrupted      os.Signal
	timedOut         bool
	stuck            []string // children still running at the timeout
	timeoutDiag      string   // the queue's state at the timeout
	aborted          bool
	interruptedTwice bool
	leftover         int // messages the parent still dequeued after the consumers stopped
}

// runStress performs a whole run and returns its report.
func runStress(cfg runConfig) *Report {
	r := &runner{cfg: cfg, rep: newReport(cfg), clk: newMonoClock(), sigs: make(chan os.Signal, 4)}
	// Never stopped: a signal that arrives after the run, while the report
	// is printed, is ignored rather than killing the process half-way.
	signal.Notify(r.sigs, syscall.SIGINT, syscall.SIGTERM)
	r.execute()
	return r.rep
}

func (r *runner) execute() {
	defer r.cleanup()
	if err := r.setup(); err != nil {
		r.rep.setError("%v", err)
		return
	}
	if err := r.spawn(); err != nil {
		r.abort()
		r.rep.setError("%v", err)
		r.collectChildren()
		return
	}
	r.supervise()
	r.collectChildren()
	r.judge()
}

// setup creates the segment and the records directory.
func (r *runner) setup() error {
	q, path, err := createFresh("run", "mpmc-stress-", r.cfg.Path, mpmc.Config{Capacity: r.cfg.Capacity, SlotSize: r.cfg.Size, Perm: 0o600}, r.sigs)
	r.path = path
	if err != nil {
		return err
	}
	r.q, r.created = q, true
	r.rep.Path = r.path
	return nil
}

// cleanup releases everything setup made: the handle and the segment file
// (only if this run created it).
func (r *runner) cleanup() {
	if r.q != nil {
		r.q.Close()
	}
	if r.created {
		var note string
		if r.rep.Removed, note = removeCreated(r.path); note != "" {
			r.rep.Notes = append(r.rep.Notes, note)
		}
	}
}

// recordStream is the parent's end of a consumer's records pipe, read and
// verified while the run goes on.
type recordStream struct {
	n    uint64 // records read
	err  error  // how reading ended, if not at a clean end of stream
	done chan struct{}
}

// startConsumer starts consumer id with a records pipe whose records go
// straight to the verifier.
func (r *runner) startConsumer(exe string, id int, args, env []string) (*child, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("records pipe for consumer %d: %v", id, err)
	}
	c, err := startChild(exe, roleConsumer, id, args, env, []*os.File{pw}, r.exits)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	s := &recordStream{done: make(chan struct{})}
	vc := r.ver.Consumer(id)
	go func() {
		defer close(s.done)
		s.n, s.err = verify.ReadRecords(pr, vc.ObserveBatch)
		pr.Close()
	}()
	r.streams = append(r.streams, s)
	return c, nil
}

// spawn starts every child, waits until all are ready and tells them to go.
func (r *runner) spawn() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the stress binary to re-execute: %v", err)
	}
	cfg := r.cfg
	r.exits = make(chan *child, cfg.Producers+cfg.Consumers)
	common := []string{"-path", r.path, "-size", fmt.Sprint(cfg.Size), "-seed", fmt.Sprint(cfg.Seed), "-spin", cfg.Spin.String()}
	env := os.Environ()
	r.ver = verify.New(cfg.Producers)
	for i := range cfg.Producers {
		if cfg.Messages > 0 {
			r.ver.SetLimit(i, producerCount(cfg.Messages, cfg.Producers, i))
		}
	}
	for i := range cfg.Consumers {
		c, err := r.startConsumer(exe, i, common, env)
		if err != nil {
			return err
		}
		r.consumers = append(r.consumers, c)
	}
	for i := range cfg.Producers {
		c, err := startChild(exe, roleProducer, i, append(common, "-count", fmt.Sprint(producerCount(cfg.Messages, cfg.Producers, i))), env, nil, r.exits)
		if err != nil {
			return err
		}
		r.producers = append(r.producers, c)
	}
	all := r.children()
	if err := waitReady(all, min(readyTimeout, cfg.Timeout)); err != nil {
		return err
	}
	r.goNs, r.goTime = r.clk.Now(), time.Now()
	for _, c := range all {
		c.signalGo() // a child that died here is reported by supervise
	}
	return nil
}

func (r *runner) children() []*child {
	return append(append([]*child(nil), r.consumers...), r.producers...)
}

// shutdown shuts the queue down once.
func (r *runner) shutdown() {
	if r.shutdownAt.IsZero() {
		r.shutdownAt = time.Now()
		r.q.Shutdown()
	}
}

// abort kills every child that is still running.
func (r *runner) abort() {
	r.aborted = true
	for _, c := range r.children() {
		c.kill()
	}
}

// supervise runs the event loop from the go signal until every child has
// exited: it shuts the queue down when the producers are done, the duration
// is over or a first signal arrives, kills everything on a second signal, a
// timeout or a child that fails, and keeps the progress bar up to date.
func (r *runner) supervise() {
	cfg := r.cfg
	timeout := time.NewTimer(cfg.Timeout - time.Since(r.goTime))
	defer timeout.Stop()
	var durationC <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		durationC = t.C
	}
	var tick <-chan time.Time
	var bar *progressbar.ProgressBar
	if cfg.progress {
		bar = newProgressBar(cfg)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		tick = t.C
		defer func() {
			bar.Set64(int64(r.q.Stats().DequeuePos))
			bar.Finish()
			bar.Clear()
		}()
	}
	producersLeft, consumersLeft := len(r.producers), len(r.consumers)
	for producersLeft+consumersLeft > 0 {
		select {
		case c := <-r.exits:
			if c.role == roleProducer {
				producersLeft--
			} else {
				consumersLeft--
			}
			switch {
			case !c.exitedOK():
				r.abort()
			case c.role == roleConsumer && r.shutdownAt.IsZero():
				r.rep.setError("%v exited before the queue was shut down", c)
				r.abort()
			case producersLeft == 0:
				r.shutdown()
			}
		case <-durationC:
			r.shutdown()
		case s := <-r.sigs:
			if r.interrupted == nil {
				r.interrupted = s
				r.shutdown()
			} else {
				r.interruptedTwice = true
				r.abort()
			}
		case <-timeout.C:
			r.timedOut = true
			r.timeoutDiag = queueDiagnosis(r.path)
			for _, c := range r.children() {
				select {
				case <-c.done:
				default:
					r.stuck = append(r.stuck, c.String())
				}
			}
			r.abort()
		case <-tick:
			bar.Set64(int64(r.q.Stats().DequeuePos))
		}
		if r.aborted {
			break
		}
	}
	if r.aborted {
		r.reap()
	}
}

// reap waits, boundedly, for every killed child to be reaped.
func (r *runner) reap() {
	deadline := time.After(reapTimeout)
	for _, c := range r.children() {
		select {
		case <-c.done:
		case <-deadline:
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%v could not be reaped within %v", c, reapTimeout))
			return
		}
	}
}

// queueDiagnosis describes a stuck queue for the timeout message.
func queueDiagnosis(path string) string {
	info, err := mpmc.Inspect(path)
	if err != nil {
		return fmt.Sprintf("inspect failed: %v", err)
	}
	s := info.Stats
	claims := 0
	for _, p := range info.Participants {
		claims += p.Claims
	}
	return fmt.Sprintf("queue len %d, enqueue pos %d, dequeue pos %d, shutdown %v, sleeping consumers %v, sleeping producers %v, claims held %d",
		s.Len, s.EnqueuePos, s.DequeuePos, s.Shutdown, info.SleepingConsumers, info.SleepingProducers, claims)
}

// collectChildren records every child's exit, CPU time and stderr.
func (r *runner) collectChildren() {
	for _, c := range r.children() {
		r.rep.addChild(c)
	}
}

// judge decides the verdict: errors and failures of the run itself first,
// then the verification of what the consumers received.
func (r *runner) judge() {
	rep := r.rep
	if r.q != nil {
		rep.setQueueStats(r.q.Stats())
	}
	if r.interrupted != nil {
		rep.Interrupted = r.interrupted.String()
	}
	if rep.Verdict != "" {
		return
	}
	switch {
	case r.timedOut:
		rep.setFail("run did not finish within -timeout %v: still running: %s; %s", r.cfg.Timeout, strings.Join(r.stuck, ", "), r.timeoutDiag)
		return
	case r.interruptedTwice:
		rep.setError("interrupted twice: every child was killed, nothing verified")
		return
	}
	// The first child that failed explains the others, which were killed.
	for _, c := range r.children() {
		if fail, msg := c.problem(); msg != "" && !c.wasKilled() {
			if fail {
				rep.setFail("%s", msg)
			} else {
				rep.setError("%s", msg)
			}
			return
		}
	}
	if r.aborted {
		rep.setError("run aborted")
		return
	}
	r.verify()
}

// verify checks exactly-once delivery and fills in the measurements.
func (r *runner) verify() {
	rep := r.rep
	ps := make([]verify.Producer, len(r.producers))
	for i, c := range r.producers {
		ps[i] = verify.Producer{Sent: c.getResult().Messages, Exact: true}
	}
	hist := newLatencyHistogram()
	var lastRecv int64
	var mismatch []string
	deadline := time.After(reapTimeout)
	for i, c := range r.consumers {
		res, s := c.getResult(), r.streams[i]
		select {
		case <-s.done:
		case <-deadline:
			rep.setError("the records pipe of %v was still open %v after it exited", c, reapTimeout)
			return
		}
		if s.err != nil {
			rep.setError("records of %v: %v", c, s.err)
			return
		}
		if s.n != res.Messages {
			mismatch = append(mismatch, fmt.Sprintf("%v reported %d messages but recorded %d", c, res.Messages, s.n))
		}
		if res.Latency != nil {
			if err := res.Latency.Validate(); err != nil {
				rep.setError("latency histogram of %v: %v", c, err)
				return
			}
			hist.Merge(hdrhistogram.Import(res.Latency))
		}
		lastRecv = max(lastRecv, res.LastNs)
		rep.ClockErrorNs = max(rep.ClockErrorNs, res.ClockError.Nanoseconds())
		for _, s := range res.CorruptSamples {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%v: corrupt %s", c, s))
		}
	}
	for _, c := range r.producers {
		rep.ClockErrorNs = max(rep.ClockErrorNs, c.getResult().ClockError.Nanoseconds())
	}
	r.checkDrained()
	res := r.ver.Finish(ps, verify.Allowance{})
	rep.setMeasurements(res, hist, r.goNs, lastRecv)
	switch {
	case len(mismatch) > 0:
		rep.setError("%s", strings.Join(mismatch, "; "))
	case !res.OK():
		rep.setFail("%s", res.Problems())
	case r.leftover > 0:
		rep.setFail("%d messages were left in the queue after every consumer saw ErrClosed (Shutdown must drain)", r.leftover)
	default:
		rep.setOK(res.Unique)
	}
}

// checkDrained looks for messages left behind once every consumer has seen
// ErrClosed: the parent dequeues until ErrClosed itself. A message found
// there breaks Shutdown's promise (it is also missing from the consumers'
// records, so verification reports it lost). Len is noted when it was not
// zero although nothing was left: it then counted positions that a producer
// claimed and abandoned at Shutdown (skipped slots nobody passed over).
func (r *runner) checkDrained() {
	var err error
	if r.leftover, err = drainQueue(r.q); err != nil {
		r.rep.Notes = append(r.rep.Notes, err.Error())
	}
	if n := r.rep.Queue.FinalLen; n != 0 && r.leftover == 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("Len() was %d after every consumer saw ErrClosed, yet no message was left: it counts %d position(s) abandoned at Shutdown (enqueue pos %d, dequeue pos %d)",
			n, n, r.rep.Queue.EnqueuePos, r.rep.Queue.DequeuePos))
	}
}

// drainQueue dequeues, without waiting, what is left in a queue that was
// shut down and returns how many messages it found. The error says how the
// draining ended if not with ErrClosed.
func drainQueue(q *mpmc.Queue) (int, error) {
	buf := make([]byte, q.SlotSize())
	n := 0
	for range q.Cap() + 1 {
		_, err := q.TryDequeue(buf)
		if err != nil {
			if !errors.Is(err, mpmc.ErrClosed) {
				return n, fmt.Errorf("draining after the run: TryDequeue returned %v, not ErrClosed", err)
			}
			break
		}
		n++
	}
	return n, nil
}
