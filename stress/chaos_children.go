package main

// The children of a chaos run: started with their logs, told to go, killed
// at random and replaced, and drained once they exit.

import (
	"fmt"
	"time"

	"github.com/shmq/mpmc/stress/internal/chaoslog"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/proc"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// start starts one child of role with a fresh id and its log.
func (r *chaosRunner) start(role proc.Role) (*chaosChild, error) {
	kind, id := chaoslog.Consumer, r.nextCons
	if role == proc.Producer {
		kind, id = chaoslog.Producer, len(r.producers)
		r.ver.Grow(id + 1) // before it can send anything
	}
	log, err := chaoslog.Create(fmt.Sprintf("mpmc-chaos-%s-%d", role, id), kind, consumerRing)
	if err != nil {
		return nil, fmt.Errorf("log of %s %d: %v", role, id, err)
	}
	c, err := r.s.Start(role, id, r.common, log.File())
	if err != nil {
		log.Close()
		return nil, err
	}
	cc := &chaosChild{Child: c, log: log}
	if role == proc.Producer {
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
	r.common = []string{"-path", r.s.Path, "-size", fmt.Sprint(r.cfg.Size), "-seed", fmt.Sprint(r.cfg.Seed),
		"-log", "-recovery-timeout", r.cfg.RecoveryTimeout.String()}
	r.ver = verify.New(0)
	for range r.cfg.Consumers {
		if _, err := r.start(proc.Consumer); err != nil {
			return err
		}
	}
	for range r.cfg.Producers {
		if _, err := r.start(proc.Producer); err != nil {
			return err
		}
	}
	if err := r.s.WaitReady(r.s.Children, r.cfg.Timeout); err != nil {
		return err
	}
	r.goTime = time.Now()
	r.goNs = r.clk.Now()
	r.tl = newTimeline(r.goNs, r.cfg.Duration+time.Second)
	r.lastDelivery, r.lastTick = r.goTime, r.goTime
	for _, c := range r.s.SignalGo(r.s.Children) {
		r.byChild[c].running.Store(true)
	}
	return nil
}

// goWhenReady tells a replacement to go as soon as it is ready.
func (r *chaosRunner) goWhenReady(c *chaosChild) {
	t := time.NewTimer(harness.ReadyTimeout)
	defer t.Stop()
	select {
	case <-c.Ready():
		if c.SignalGo() == nil {
			c.running.Store(true)
		}
	case <-c.Done():
	case <-t.C:
		select {
		case r.slow <- c:
		case <-r.stopped:
		}
	case <-r.stopped:
	}
}

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
	v.Kill()
	if !v.WasKilled() {
		return // it had exited already: its exit is handled as unexpected
	}
	k := Kill{AtSeconds: r.since(time.Now()), Role: string(v.Role), ID: v.ID, Pid: v.Pid(), Running: running}
	r.kills = append(r.kills, k)
	if r.cfg.RespawnDelay > 0 {
		time.AfterFunc(r.cfg.RespawnDelay, func() {
			select {
			case r.respawn <- v.Role:
			case <-r.stopped:
			}
		})
		return
	}
	r.replace(v.Role)
}

// replace starts a new child of role, which goes as soon as it is ready.
func (r *chaosRunner) replace(role proc.Role) {
	c, err := r.start(role)
	if err != nil {
		r.rep.Error(harness.CauseSetup, "starting a replacement %s: %v", role, err)
		r.s.Abort()
		return
	}
	go r.goWhenReady(c)
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
	if c.WasKilled() && c.Signaled() {
		return
	}
	if r.stopAt.IsZero() {
		// Not killed, or it exited by itself before the kill landed.
		o, msg := c.Problem()
		if o == proc.Clean {
			o, msg = proc.Failed, fmt.Sprintf("%v exited before the queue was shut down", c.Child)
		}
		r.rep.takeEvidence(fmt.Sprintf("when %v exited", c.Child), r.s.Path, r.kills)
		r.rep.ChildFailed(o, msg)
		r.s.Abort()
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
	if c.Role == proc.Producer {
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
		if !c.Running() {
			r.finish(c)
		}
	}
}

// drain passes a consumer's new records to the verifier.
func (r *chaosRunner) drain(c *chaosChild) {
	if c.log == nil || c.Role != proc.Consumer {
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
		r.rep.Error(harness.CauseRecords, "log of %v: %v", c.Child, err)
		r.s.Abort()
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
