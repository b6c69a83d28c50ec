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

import (
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/chaoslog"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// chaosConfig is what the flags of `stress chaos` ask for.
type chaosConfig struct {
	Producers       int           `json:"producers"`
	Consumers       int           `json:"consumers"`
	Duration        time.Duration `json:"duration_ns"`
	KillEvery       time.Duration `json:"kill_every_ns"`
	Size            int           `json:"size"`
	Capacity        int           `json:"capacity"`
	Redeliver       bool          `json:"redeliver"`
	RecoveryTimeout time.Duration `json:"recovery_timeout_ns"`
	RespawnDelay    time.Duration `json:"respawn_delay_ns"`
	Seed            uint64        `json:"seed"`
	Path            string        `json:"path"`
	Timeout         time.Duration `json:"timeout_ns"`

	json bool
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
	*child
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

// chaosRunner holds the state of one chaos run.
type chaosRunner struct {
	cfg  chaosConfig
	rep  *ChaosReport
	sigs chan os.Signal
	rng  *mrand.Rand

	path    string
	created bool
	q       *mpmc.Queue
	ver     *verify.Verifier

	exe    string
	env    []string
	common []string

	all       []*chaosChild // every child started
	byChild   map[*child]*chaosChild
	producers []*chaosChild // by producer id
	live      []*chaosChild // started, neither killed nor exited
	pending   int           // started and not yet exited
	exits     chan *child
	slow      chan *chaosChild // children not ready in time
	respawn   chan string      // roles whose replacement is due (-respawn-delay)
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

	interrupted      os.Signal
	interruptedTwice bool
	aborted          bool
	timedOut         bool
	stuck            []string
	timeoutDiag      string
}

// runChaos performs a whole chaos run and returns its report.
func runChaos(cfg chaosConfig) *ChaosReport {
	r := &chaosRunner{
		cfg:     cfg,
		rep:     newChaosReport(cfg),
		sigs:    make(chan os.Signal, 4),
		rng:     mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x6368616f73)),
		byChild: map[*child]*chaosChild{},
		exits:   make(chan *child, 1024),
		slow:    make(chan *chaosChild, 1),
		respawn: make(chan string),
		clk:     newMonoClock(),
		stopped: make(chan struct{}),
		bound:   cfg.RecoveryTimeout + cfg.RespawnDelay + stallMargin,
	}
	r.rep.StallBoundSeconds = r.bound.Seconds()
	signal.Notify(r.sigs, syscall.SIGINT, syscall.SIGTERM)
	r.execute()
	return r.rep
}

func (r *chaosRunner) execute() {
	defer r.cleanup()
	if err := r.setup(); err != nil {
		r.rep.setError("%v", err)
		return
	}
	if err := r.spawn(); err != nil {
		r.rep.setError("%v", err)
		r.abort()
		r.reap()
		r.finishAll()
		r.collect()
		return
	}
	r.supervise()
	close(r.stopped)
	if r.aborted {
		r.reap()
	}
	r.finishAll()
	r.collect()
	r.judge()
}

// setup creates the segment.
func (r *chaosRunner) setup() error {
	q, path, err := createFresh("chaos", "mpmc-stress-chaos-", r.cfg.Path, mpmc.Config{Capacity: r.cfg.Capacity, SlotSize: r.cfg.Size, Perm: 0o600, Redeliver: r.cfg.Redeliver}, r.sigs)
	r.path = path
	if err != nil {
		return err
	}
	q.SetRecoveryTimeout(r.cfg.RecoveryTimeout)
	r.q, r.created = q, true
	r.rep.Path = r.path
	return nil
}

// cleanup closes every log still open and the handle, and removes the
// segment (only if this run created it).
func (r *chaosRunner) cleanup() {
	for _, c := range r.all {
		if c.log != nil {
			c.log.Close()
			c.log = nil
		}
	}
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

// start starts one child of role with a fresh id and its log.
func (r *chaosRunner) start(role string) (*chaosChild, error) {
	kind, id := chaoslog.Consumer, r.nextCons
	if role == roleProducer {
		kind, id = chaoslog.Producer, len(r.producers)
		r.ver.Grow(id + 1) // before it can send anything
	}
	log, err := chaoslog.Create(fmt.Sprintf("mpmc-chaos-%s-%d", role, id), kind, consumerRing)
	if err != nil {
		return nil, fmt.Errorf("log of %s %d: %v", role, id, err)
	}
	c, err := startChild(r.exe, role, id, r.common, r.env, []*os.File{log.File()}, r.exits)
	if err != nil {
		log.Close()
		return nil, err
	}
	cc := &chaosChild{child: c, log: log}
	if role == roleProducer {
		r.producers = append(r.producers, cc)
	} else {
		cc.vc = r.ver.Consumer(id)
		r.nextCons++
	}
	r.all = append(r.all, cc)
	r.byChild[c] = cc
	r.live = append(r.live, cc)
	r.pending++
	return cc, nil
}

// spawn starts the first children, waits until all are ready and tells them
// to go: the clock of the run starts there.
func (r *chaosRunner) spawn() error {
	var err error
	if r.exe, err = os.Executable(); err != nil {
		return fmt.Errorf("cannot find the stress binary to re-execute: %v", err)
	}
	r.env = os.Environ()
	r.common = []string{"-path", r.path, "-size", fmt.Sprint(r.cfg.Size), "-seed", fmt.Sprint(r.cfg.Seed),
		"-log", "-recovery-timeout", r.cfg.RecoveryTimeout.String()}
	r.ver = verify.New(0)
	for range r.cfg.Consumers {
		if _, err := r.start(roleConsumer); err != nil {
			return err
		}
	}
	for range r.cfg.Producers {
		if _, err := r.start(roleProducer); err != nil {
			return err
		}
	}
	first := make([]*child, len(r.all))
	for i, c := range r.all {
		first[i] = c.child
	}
	if err := waitReady(first, min(readyTimeout, r.cfg.Timeout)); err != nil {
		return err
	}
	r.goTime = time.Now()
	r.goNs = r.clk.Now()
	r.tl = newTimeline(r.goNs, r.cfg.Duration+time.Second)
	r.lastDelivery, r.lastTick = r.goTime, r.goTime
	for _, c := range r.all {
		if c.signalGo() == nil {
			c.running.Store(true)
		}
	}
	return nil
}

// goWhenReady tells a replacement to go as soon as it is ready.
func (r *chaosRunner) goWhenReady(c *chaosChild) {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-c.ready:
		if c.signalGo() == nil {
			c.running.Store(true)
		}
	case <-c.done:
	case <-t.C:
		select {
		case r.slow <- c:
		case <-r.stopped:
		}
	case <-r.stopped:
	}
}

// since is the time since the go signal.
func (r *chaosRunner) since(t time.Time) float64 { return t.Sub(r.goTime).Seconds() }

// nextKill draws the time to the next kill: -kill-every, jittered by +-50%.
func (r *chaosRunner) nextKill() time.Duration {
	return r.cfg.KillEvery/2 + time.Duration(r.rng.Int64N(int64(r.cfg.KillEvery)))
}

// killOne SIGKILLs a random live child and starts its replacement.
func (r *chaosRunner) killOne() {
	if len(r.live) == 0 {
		return
	}
	i := r.rng.IntN(len(r.live))
	v := r.live[i]
	r.live = append(r.live[:i], r.live[i+1:]...)
	running := v.running.Load()
	v.kill()
	if !v.wasKilled() {
		return // it had exited already: its exit is handled as unexpected
	}
	k := Kill{AtSeconds: r.since(time.Now()), Role: v.role, ID: v.id, Pid: v.cmd.Process.Pid, Running: running}
	r.kills = append(r.kills, k)
	if r.cfg.RespawnDelay > 0 {
		time.AfterFunc(r.cfg.RespawnDelay, func() {
			select {
			case r.respawn <- v.role:
			case <-r.stopped:
			}
		})
		return
	}
	r.replace(v.role)
}

// replace starts a new child of role, which goes as soon as it is ready.
func (r *chaosRunner) replace(role string) {
	c, err := r.start(role)
	if err != nil {
		r.rep.setError("starting a replacement %s: %v", role, err)
		r.abort()
		return
	}
	go r.goWhenReady(c)
}

// stopChaos stops the kills and shuts the queue down: producers stop,
// consumers drain the queue and exit.
func (r *chaosRunner) stopChaos() {
	if !r.stopAt.IsZero() {
		return
	}
	r.stopAt = time.Now()
	r.drainAll()
	r.killsOn = false
	r.q.Shutdown()
}

// abort kills every child still running.
func (r *chaosRunner) abort() {
	r.aborted = true
	for _, c := range r.all {
		c.kill()
	}
}

// reap waits, boundedly, for every child to be reaped.
func (r *chaosRunner) reap() {
	deadline := time.After(reapTimeout)
	for _, c := range r.all {
		select {
		case <-c.done:
		case <-deadline:
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%v could not be reaped within %v", c.child, reapTimeout))
			return
		}
	}
}

// supervise runs the event loop from the go signal until every child has
// exited after the shutdown, or the run is aborted.
func (r *chaosRunner) supervise() {
	timeout := time.NewTimer(r.cfg.Timeout)
	defer timeout.Stop()
	duration := time.NewTimer(r.cfg.Duration)
	defer duration.Stop()
	killT := time.NewTimer(r.nextKill())
	defer killT.Stop()
	tick := time.NewTicker(chaosTick)
	defer tick.Stop()
	var grace <-chan time.Time
	r.killsOn = true
	for r.stopAt.IsZero() || r.pending > 0 {
		select {
		case c := <-r.exits:
			r.exited(r.byChild[c])
		case <-killT.C:
			if r.killsOn {
				r.killOne()
				killT.Reset(r.nextKill())
			}
		case role := <-r.respawn:
			if r.stopAt.IsZero() {
				r.replace(role)
			}
		case <-duration.C:
			r.stopChaos()
		case s := <-r.sigs:
			if r.interrupted == nil {
				r.interrupted = s
				r.stopChaos()
			} else {
				r.interruptedTwice = true
				r.abort()
			}
		case <-timeout.C:
			r.timeoutNow(fmt.Sprintf("the run did not finish within -timeout %v", r.cfg.Timeout))
		case <-grace:
			r.timeoutNow(fmt.Sprintf("the children did not exit within %v of Shutdown", shutdownGrace))
		case c := <-r.slow:
			r.rep.setError("%v was not ready after %v", c.child, readyTimeout)
			r.abort()
		case <-tick.C:
			// The tick's own time is when it was due, not when the
			// loop got to it: a busy or descheduled parent shows up
			// only in the time now.
			now := time.Now()
			r.drainAll()
			r.watch(now)
		}
		if r.aborted {
			return
		}
		if grace == nil && !r.stopAt.IsZero() {
			grace = time.After(shutdownGrace)
		}
	}
}

// timeoutNow records who is still running and the queue's state, and
// kills everything.
func (r *chaosRunner) timeoutNow(why string) {
	r.timedOut = true
	r.timeoutDiag = why + ": " + queueDiagnosis(r.path)
	for _, c := range r.all {
		select {
		case <-c.done:
		default:
			r.stuck = append(r.stuck, c.child.String())
		}
	}
	r.rep.takeEvidence("at the timeout", r.path, r.kills)
	r.abort()
}

// exited handles a child that has exited: its log is drained and closed.
// Before the shutdown, only killed children may exit: any other exit means
// the child failed, and ends the run.
func (r *chaosRunner) exited(c *chaosChild) {
	r.pending--
	r.finish(c)
	for i, l := range r.live {
		if l == c {
			r.live = append(r.live[:i], r.live[i+1:]...)
			break
		}
	}
	signaled := c.state != nil && !c.state.Exited()
	if c.wasKilled() && signaled {
		return
	}
	if r.stopAt.IsZero() {
		// Not killed, or it exited by itself before the kill landed.
		fail, msg := c.problem()
		if msg == "" {
			msg = fmt.Sprintf("%v exited before the queue was shut down", c.child)
		}
		r.rep.takeEvidence(fmt.Sprintf("when %v exited", c.child), r.path, r.kills)
		if fail {
			r.rep.setFail("%s", msg)
		} else {
			r.rep.setError("%s", msg)
		}
		r.abort()
	}
}

// finish drains and closes a child's log once it has exited.
func (r *chaosRunner) finish(c *chaosChild) {
	if c.finished {
		return
	}
	c.finished = true
	if c.log == nil {
		return
	}
	if c.role == roleProducer {
		c.acked = c.log.Acked()
	} else {
		r.drain(c)
		c.waits = c.log.Waits()
	}
	c.log.Close()
	c.log = nil
}

// finishAll finishes every child that has exited (after an abort, some
// were not seen exiting by supervise).
func (r *chaosRunner) finishAll() {
	for _, c := range r.all {
		select {
		case <-c.done:
			r.finish(c)
		default:
		}
	}
}

// drain passes a consumer's new records to the verifier.
func (r *chaosRunner) drain(c *chaosChild) {
	if c.log == nil || c.role != roleConsumer {
		return
	}
	n, err := c.log.Drain(func(rs []verify.Record) {
		c.vc.ObserveBatch(rs)
		r.tl.mark(rs)
		for _, rec := range rs {
			r.lastAt = max(r.lastAt, rec.At)
		}
	})
	c.records += n
	r.delivered += n
	if err != nil {
		r.rep.setError("log of %v: %v", c.child, err)
		r.abort()
	}
}

// drainAll drains every consumer's log.
func (r *chaosRunner) drainAll() {
	for _, c := range r.all {
		if !c.finished {
			r.drain(c)
		}
	}
}

// watch looks, at each tick, for a time without deliveries as the parent
// sees it (at most the real one, plus the parent's own delays): beyond the
// stall bound it captures the queue's state, and far beyond it declares the
// queue wedged and stops the run.
func (r *chaosRunner) watch(now time.Time) {
	pause := now.Sub(r.lastTick)
	r.rep.ParentMaxPauseSeconds = max(r.rep.ParentMaxPauseSeconds, pause.Seconds())
	if pause > pauseNoted && len(r.pauses) < 1000 {
		r.pauses = append(r.pauses, gap{int(r.lastTick.Sub(r.goTime) / time.Millisecond), int(pause / time.Millisecond)})
	}
	r.lastTick = now
	if r.delivered != r.seenCount {
		r.seenCount = r.delivered
		r.lastDelivery = now
		r.evidence = false
		return
	}
	if !r.stopAt.IsZero() {
		return
	}
	gap := now.Sub(r.lastDelivery)
	if gap > r.bound && !r.evidence {
		r.evidence = true
		r.rep.takeEvidence(fmt.Sprintf("after %v without a delivery", gap.Round(time.Millisecond)), r.path, r.kills)
	}
	if gap > r.bound+wedgeGrace {
		r.wedged = true
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("no delivery for %v: the queue looks wedged; the kills stopped and the queue was shut down early", gap.Round(time.Millisecond)))
		r.stopChaos()
	}
}

// stalls measures the times without deliveries while the chaos ran, from
// the timeline, and names the kill that preceded each of the longest.
func (r *chaosRunner) stalls() {
	end := time.Since(r.goTime)
	if !r.stopAt.IsZero() {
		end = r.stopAt.Sub(r.goTime)
	}
	longest, longer := r.tl.gaps(int(end/time.Millisecond), 5, r.cfg.RecoveryTimeout)
	r.rep.LongStalls = longer
	for _, g := range longest {
		st := Stall{Seconds: float64(g.length) / 1e3, FromSeconds: float64(g.from) / 1e3}
		for _, p := range r.pauses {
			if o := min(p.from+p.length, g.from+g.length) - max(p.from, g.from); o > 0 {
				st.ParentPausedSeconds += float64(o) / 1e3
			}
		}
		for i := len(r.kills) - 1; i >= 0; i-- {
			if k := r.kills[i]; k.AtSeconds <= st.FromSeconds {
				st.AfterKill = &k
				break
			}
		}
		r.rep.Stalls = append(r.rep.Stalls, st)
	}
	if len(longest) > 0 {
		r.rep.WorstStall = r.rep.Stalls[0]
	}
}

// collect records every child, the queue's final state and the counts.
func (r *chaosRunner) collect() {
	rep := r.rep
	for _, c := range r.all {
		rep.addChild(c.child)
		rep.RingWaits += c.waits
	}
	rep.Kills = r.kills
	for _, k := range r.kills {
		if k.Role == roleProducer {
			rep.KilledProducers++
		} else {
			rep.KilledConsumers++
		}
		if !k.Running {
			rep.KilledStarting++
		}
	}
	rep.Started = len(r.all)
	if r.interrupted != nil {
		rep.Interrupted = r.interrupted.String()
	}
	if !r.stopAt.IsZero() {
		rep.ChaosSeconds = r.since(r.stopAt)
	}
	rep.Delivered = r.delivered
	if r.lastAt > r.goNs {
		rep.LastDeliverySeconds = float64(r.lastAt-r.goNs) / 1e9
	}
	if r.tl != nil {
		r.stalls()
	}
}

// judge decides the verdict: errors and failures of the run itself first,
// then the verification against what the kills explain.
func (r *chaosRunner) judge() {
	rep := r.rep
	if rep.Verdict != "" {
		return
	}
	switch {
	case r.timedOut:
		rep.setFail("%s; still running: %s; worst stall %s", r.timeoutDiag, strings.Join(r.stuck, ", "), rep.WorstStall)
		return
	case r.interruptedTwice:
		rep.setError("interrupted twice: every child was killed, nothing verified")
		return
	}
	for _, c := range r.all {
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
	// What the children said at the end must match their logs.
	var mismatch []string
	for _, c := range r.all {
		res := c.getResult()
		if c.wasKilled() || res == nil {
			continue
		}
		if n := map[bool]uint64{true: c.acked, false: c.records}[c.role == roleProducer]; n != res.Messages {
			mismatch = append(mismatch, fmt.Sprintf("%v reported %d messages but its log has %d", c.child, res.Messages, n))
		}
	}
	if len(mismatch) > 0 {
		rep.setError("%s", strings.Join(mismatch, "; "))
		return
	}
	leftover, err := drainQueue(r.q)
	if err != nil {
		rep.Notes = append(rep.Notes, err.Error())
	}
	rep.Leftover = leftover
	stats := r.q.Stats()
	rep.setQueueStats(stats)
	if info, err := mpmc.Inspect(r.path); err == nil {
		for _, p := range info.Participants {
			if !p.Alive && p.Claims > 0 {
				rep.DeadClaimsAtEnd += p.Claims
			}
		}
	}
	ps := make([]verify.Producer, len(r.producers))
	for i, c := range r.producers {
		ps[i] = verify.Producer{Sent: c.acked, Exact: true}
		if c.wasKilled() {
			ps[i].MaySend = 1
		}
	}
	res := r.ver.Finish(ps, verify.Allowance{})
	rep.Verified = &res
	j := judgeChaos(chaosFacts{
		Redeliver:       r.cfg.Redeliver,
		KilledProducers: rep.KilledProducers,
		KilledConsumers: rep.KilledConsumers,
		Stats:           stats,
		Verified:        res,
		WorstStall:      time.Duration(rep.WorstStall.Seconds * 1e9),
		StallBound:      r.bound,
		Leftover:        leftover,
	})
	rep.setJudgement(j, r.goTime)
	if len(j.Problems) > 0 {
		for i, p := range j.Problems {
			if strings.HasPrefix(p, "no message was delivered") {
				j.Problems[i] = fmt.Sprintf("%s (%s)", p, rep.WorstStall)
			}
		}
		rep.setFail("%s", strings.Join(j.Problems, "; "))
		return
	}
	rep.setOK()
}
