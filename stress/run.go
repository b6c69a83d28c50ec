package main

// `stress run`: create a fresh segment, start the producer and consumer
// processes, let them run, shut the queue down, collect, verify, report.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/schollz/progressbar/v3"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/proc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// runConfig is what the flags of `stress run` ask for.
type runConfig struct {
	fleetConfig
	Messages uint64        `json:"messages"` // 0: no count limit (then Duration > 0)
	Duration time.Duration `json:"duration_ns"`
	Spin     time.Duration `json:"spin_ns"`
	Backing  string        `json:"backing"` // file, memfd or sysv

	progress bool
}

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
	cfg runConfig
	rep *Report
	s   *harness.Session
	clk *monoClock

	ver     *verify.Verifier
	streams []*recordStream // one per consumer

	producers []*proc.Child
	consumers []*proc.Child
	goNs      int64
	goTime    time.Time

	shutdownAt time.Time
	leftover   int // messages the parent still dequeued after the consumers stopped
}

func (c runConfig) backing() string {
	if c.Backing == "" {
		return harness.BackingFile
	}
	return c.Backing
}

// runStress performs a whole run and returns its report.
func runStress(cfg runConfig) *Report {
	r := &runner{cfg: cfg, rep: newReport(cfg), clk: newMonoClock()}
	r.s = harness.NewSession(&r.rep.Base, cfg.Producers+cfg.Consumers)
	r.execute()
	return r.rep
}

func (r *runner) execute() {
	defer r.s.Cleanup()
	if err := r.s.CreateBacking("run", "mpmc-stress-", r.cfg.Path, r.cfg.backing(), mpmc.Config{Capacity: r.cfg.Capacity, SlotSize: r.cfg.Size, Perm: 0o600}); err != nil {
		r.rep.Error(harness.CauseSetup, "%v", err)
		return
	}
	if err := r.spawn(); err != nil {
		r.s.Abort()
		r.rep.Error(harness.CauseSetup, "%v", err)
		r.s.Collect()
		return
	}
	r.supervise()
	r.s.Collect()
	r.judge()
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
func (r *runner) startConsumer(id int, args []string) (*proc.Child, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("records pipe for consumer %d: %v", id, err)
	}
	c, err := r.s.Start(proc.Consumer, id, args, pw)
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
	cfg := r.cfg
	common := []string{"-path", r.s.Path, "-size", fmt.Sprint(cfg.Size), "-seed", fmt.Sprint(cfg.Seed), "-spin", cfg.Spin.String()}
	r.ver = verify.New(cfg.Producers)
	for i := range cfg.Producers {
		if cfg.Messages > 0 {
			r.ver.SetLimit(i, producerCount(cfg.Messages, cfg.Producers, i))
		}
	}
	for i := range cfg.Consumers {
		c, err := r.startConsumer(i, common)
		if err != nil {
			return err
		}
		r.consumers = append(r.consumers, c)
	}
	for i := range cfg.Producers {
		c, err := r.s.Start(proc.Producer, i, append(common, "-count", fmt.Sprint(producerCount(cfg.Messages, cfg.Producers, i))))
		if err != nil {
			return err
		}
		r.producers = append(r.producers, c)
	}
	if err := r.s.WaitReady(r.s.Children, cfg.Timeout); err != nil {
		return err
	}
	r.goNs, r.goTime = r.clk.Now(), time.Now()
	r.s.SignalGo(r.s.Children) // a child it does not reach is reported by supervise
	return nil
}

// shutdown shuts the queue down once.
func (r *runner) shutdown() {
	if r.shutdownAt.IsZero() {
		r.shutdownAt = time.Now()
		r.s.Q.Shutdown()
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
			bar.Set64(int64(r.s.Q.Stats().DequeuePos))
			bar.Finish()
			bar.Clear()
		}()
	}
	producersLeft, consumersLeft := len(r.producers), len(r.consumers)
	for producersLeft+consumersLeft > 0 {
		select {
		case c := <-r.s.Exits:
			if c.Role == proc.Producer {
				producersLeft--
			} else {
				consumersLeft--
			}
			switch {
			case !c.ExitedOK():
				r.s.Abort()
			case c.Role == proc.Consumer && r.shutdownAt.IsZero():
				r.rep.Error(harness.CauseChild, "%v exited before the queue was shut down", c)
				r.s.Abort()
			case producersLeft == 0:
				r.shutdown()
			}
		case <-durationC:
			r.shutdown()
		case sig := <-r.s.Sigs:
			if r.s.Signal(sig) {
				r.shutdown()
			}
		case <-timeout.C:
			r.s.TimeOut("")
		case <-tick:
			bar.Set64(int64(r.s.Q.Stats().DequeuePos))
		}
		if r.s.Aborted {
			break
		}
	}
	if r.s.Aborted {
		r.s.Reap()
	}
}

// judge decides the verdict: errors and failures of the run itself first,
// then the verification of what the consumers received.
func (r *runner) judge() {
	rep := r.rep
	rep.Queue = r.s.Q.Stats()
	if rep.Decided() {
		return
	}
	f := r.s.Facts()
	timeout := fmt.Sprintf("run did not finish within -timeout %v: still running: %s; %s", r.cfg.Timeout, strings.Join(f.Stuck, ", "), f.Diagnosis)
	if v, ok := f.Decide(timeout); ok {
		rep.Adopt(v)
		return
	}
	r.verify()
}

// verify checks exactly-once delivery and fills in the measurements.
func (r *runner) verify() {
	rep := r.rep
	ps := make([]verify.Producer, len(r.producers))
	for i, c := range r.producers {
		ps[i] = verify.Producer{Sent: c.Result().Messages, Exact: true}
	}
	hist := newLatencyHistogram()
	var lastRecv int64
	var mismatch []string
	deadline := time.After(harness.ReapTimeout)
	for i, c := range r.consumers {
		res, s := c.Result(), r.streams[i]
		select {
		case <-s.done:
		case <-deadline:
			rep.Error(harness.CauseRecords, "the records pipe of %v was still open %v after it exited", c, harness.ReapTimeout)
			return
		}
		if s.err != nil {
			rep.Error(harness.CauseRecords, "records of %v: %v", c, s.err)
			return
		}
		if s.n != res.Messages {
			mismatch = append(mismatch, fmt.Sprintf("%v reported %d messages but recorded %d", c, res.Messages, s.n))
		}
		if res.Latency != nil {
			if err := res.Latency.Validate(); err != nil {
				rep.Error(harness.CauseRecords, "latency histogram of %v: %v", c, err)
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
		rep.ClockErrorNs = max(rep.ClockErrorNs, c.Result().ClockError.Nanoseconds())
	}
	r.checkDrained()
	res := r.ver.Finish(ps, verify.Allowance{})
	rep.setMeasurements(res, hist, r.goNs, lastRecv)
	switch {
	case len(mismatch) > 0:
		rep.Error(harness.CauseMismatch, "%s", strings.Join(mismatch, "; "))
	case !res.OK():
		rep.Fail(harness.CauseDelivery, "%s", res.Problems())
	case r.leftover > 0:
		rep.Fail(harness.CauseLeftover, "%d messages were left in the queue after every consumer saw ErrClosed (Shutdown must drain)", r.leftover)
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
	if r.leftover, err = drainQueue(r.s.Q); err != nil {
		r.rep.Notes = append(r.rep.Notes, err.Error())
	}
	if n := r.rep.Queue.Len; n != 0 && r.leftover == 0 {
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
