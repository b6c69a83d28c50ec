package main

// `stress chaos`: producer and consumer processes run continuously against
// a fresh queue while random ones are SIGKILLed at random moments and
// replaced by new processes; then everything they acknowledged and received
// is verified against what the kills can explain (chaos_judge.go).
//
// Every child records into a chaoslog (shared memory that survives its
// SIGKILL): a producer the number of messages whose Enqueue returned nil, a
// consumer each message it received and when. The parent drains the
// consumers' logs every few milliseconds into the verifier and the delivery
// timeline (chaos_timeline.go), from which the stalls are measured; it also
// watches for a stall as it goes, to capture the queue's state while the
// stall lasts.
//
// The files of the chaos run, by job: chaos.go the configuration and the
// run's life; chaos_children.go starting, killing, replacing and draining
// children; chaos_supervise.go the event loop and the stall watch;
// chaos_verdict.go the stalls, the collection of facts and the verdict;
// chaos_judge.go the pure judge; chaos_report.go the report.

import (
	"fmt"
	mrand "math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/chaoslog"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/proc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// chaosConfig is what the flags of `stress chaos` ask for.
type chaosConfig struct {
	fleetConfig
	Duration        time.Duration `json:"duration_ns"`
	KillEvery       time.Duration `json:"kill_every_ns"`
	Redeliver       bool          `json:"redeliver"`
	RecoveryTimeout time.Duration `json:"recovery_timeout_ns"`
	RespawnDelay    time.Duration `json:"respawn_delay_ns"`
}

const (
	// defaultChaosDuration and defaultKillEvery are the defaults of
	// -duration and -kill-every.
	defaultChaosDuration = 30 * time.Second
	defaultKillEvery     = 500 * time.Millisecond
	// minKillEvery keeps the kill rate below the rate at which processes
	// can be started.
	minKillEvery = 10 * time.Millisecond

	// stallMargin is added to the recovery timeout (and the respawn delay)
	// to bound a stall: time
	// for sleepers to notice (sleep slices of 100 ms), for replacements to
	// start, and for a busy 2-core machine to schedule everyone.
	stallMargin = 2 * time.Second
	// chaosTick is how often the parent drains the consumers' logs.
	chaosTick = 2 * time.Millisecond
	// wedgeGrace is how long a stall may go on beyond its bound before the
	// run stops killing and shuts the queue down (it has failed already;
	// this tells a long stall from a wedge).
	wedgeGrace = 10 * time.Second
	// shutdownGrace is how long the children may take to exit once the
	// queue is shut down.
	shutdownGrace = 30 * time.Second
	// pauseNoted is the shortest pause of the parent between two ticks
	// that is remembered, to tell a stall of the whole machine (every
	// process descheduled, as on a VM whose host is busy) from a stall of
	// the queue.
	pauseNoted = 20 * time.Millisecond
	// consumerRing is the number of records in a consumer's log: at a
	// million messages per second per consumer, half a second of slack for
	// a parent that is not scheduled.
	consumerRing = 1 << 19
)

// autoChaosTimeout is the -timeout used when none is given.
func autoChaosTimeout(cfg chaosConfig) time.Duration {
	return cfg.Duration + shutdownGrace + time.Minute
}

// chaosChild is one child of a chaos run and its log.
type chaosChild struct {
	*proc.Child
	log     *chaoslog.Log
	vc      *verify.Consumer // consumers: the verifier's view of its records
	running atomic.Bool      // it was told to go

	finished bool   // it exited, and its log was drained and closed
	acked    uint64 // producers: messages acknowledged, read when it exited
	records  uint64 // consumers: records drained
	waits    uint64 // consumers: times its log's ring was full
}

// Kill is one SIGKILL sent by a chaos run.
type Kill struct {
	AtSeconds float64 `json:"at_seconds"` // since the go signal
	Role      string  `json:"role"`
	ID        int     `json:"id"`
	Pid       int     `json:"pid"`
	// Running is false when the child had not been told to go yet (it was
	// still starting or opening the queue).
	Running bool `json:"running"`
}

// String names the victim and when it was killed.
func (k Kill) String() string {
	return fmt.Sprintf("%s %d (pid %d) at %.3f s", k.Role, k.ID, k.Pid, k.AtSeconds)
}

// chaosRunner holds the state of one chaos run: the session (segment,
// children, signals, abort and timeout), the kills, and what the parent
// drains from the consumers' logs.
type chaosRunner struct {
	cfg chaosConfig
	rep *ChaosReport
	s   *harness.Session
	rng *mrand.Rand
	ver *verify.Verifier

	common []string // flags of every child

	all       []*chaosChild // every child started
	byChild   map[*proc.Child]*chaosChild
	producers []*chaosChild    // by producer id
	live      []*chaosChild    // started, neither killed nor exited
	pending   int              // started and not yet exited
	slow      chan *chaosChild // children not ready in time
	respawn   chan proc.Role   // roles whose replacement is due (-respawn-delay)
	stopped   chan struct{}    // closed when supervise returns
	nextCons  int

	clk     *monoClock
	tl      *timeline
	goNs    int64 // CLOCK_MONOTONIC of the go signal
	lastAt  int64 // CLOCK_MONOTONIC of the last message received
	goTime  time.Time
	stopAt  time.Time // when the chaos stopped and the queue was shut down
	kills   []Kill
	bound   time.Duration // the most a stall may last
	killsOn bool

	delivered    uint64    // records drained
	seenCount    uint64    // delivered at the last tick
	lastDelivery time.Time // when a tick last saw new records
	lastTick     time.Time
	pauses       []gap // the parent's own pauses between ticks, over pauseNoted
	evidence     bool  // evidence was taken for the current stall
	wedged       bool
}

// runChaos performs a whole chaos run and returns its report.
func runChaos(cfg chaosConfig) *ChaosReport {
	r := &chaosRunner{
		cfg:     cfg,
		rep:     newChaosReport(cfg),
		rng:     mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x6368616f73)),
		byChild: map[*proc.Child]*chaosChild{},
		slow:    make(chan *chaosChild, 1),
		respawn: make(chan proc.Role),
		clk:     newMonoClock(),
		stopped: make(chan struct{}),
		bound:   cfg.RecoveryTimeout + cfg.RespawnDelay + stallMargin,
	}
	r.s = harness.NewSession(&r.rep.Base, 1024)
	r.rep.StallBoundSeconds = r.bound.Seconds()
	r.execute()
	return r.rep
}

func (r *chaosRunner) execute() {
	defer r.cleanup()
	if err := r.setup(); err != nil {
		r.rep.Error(harness.CauseSetup, "%v", err)
		return
	}
	if err := r.spawn(); err != nil {
		r.rep.Error(harness.CauseSetup, "%v", err)
		r.s.Abort()
		r.s.Reap()
		r.finishAll()
		r.collect()
		return
	}
	r.supervise()
	close(r.stopped)
	if r.s.Aborted {
		r.s.Reap()
	}
	r.finishAll()
	r.collect()
	r.judge()
}

// setup creates the segment.
func (r *chaosRunner) setup() error {
	err := r.s.Create("chaos", "mpmc-stress-chaos-", r.cfg.Path, mpmc.Config{Capacity: r.cfg.Capacity, SlotSize: r.cfg.Size, Perm: 0o600, Redeliver: r.cfg.Redeliver})
	if err != nil {
		return err
	}
	r.s.Q.SetRecoveryTimeout(r.cfg.RecoveryTimeout)
	return nil
}

// cleanup closes every log still open, then the session's handle and
// segment.
func (r *chaosRunner) cleanup() {
	for _, c := range r.all {
		if c.log != nil {
			c.log.Close()
			c.log = nil
		}
	}
	r.s.Cleanup()
}

// since is the time since the go signal.
func (r *chaosRunner) since(t time.Time) float64 { return t.Sub(r.goTime).Seconds() }
