package main

// The event loop of a chaos run: kills on schedule, replacements, the
// duration, signals, timeouts, and at each tick the drain of the logs and
// the stall watch.

import (
	"fmt"
	"time"

	"github.com/shmq/mpmc/stress/internal/harness"
)

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
		case c := <-r.s.Exits:
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
		case sig := <-r.s.Sigs:
			if r.s.Signal(sig) {
				r.stopChaos()
			}
		case <-timeout.C:
			r.timeoutNow(fmt.Sprintf("the run did not finish within -timeout %v", r.cfg.Timeout))
		case <-grace:
			r.timeoutNow(fmt.Sprintf("the children did not exit within %v of Shutdown", shutdownGrace))
		case c := <-r.slow:
			r.rep.Error(harness.CauseChild, "%v was not ready after %v", c.Child, harness.ReadyTimeout)
			r.s.Abort()
		case <-tick.C:
			// The tick's own time is when it was due, not when the
			// loop got to it: a busy or descheduled parent shows up
			// only in the time now.
			now := time.Now()
			r.drainAll()
			r.watch(now)
		}
		if r.s.Aborted {
			return
		}
		if grace == nil && !r.stopAt.IsZero() {
			grace = time.After(shutdownGrace)
		}
	}
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
	r.s.Q.Shutdown()
}

// timeoutNow captures the queue's state and kills everything.
func (r *chaosRunner) timeoutNow(why string) {
	r.rep.takeEvidence("at the timeout", r.s.Path, r.kills)
	r.s.TimeOut(why)
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
		r.rep.takeEvidence(fmt.Sprintf("after %v without a delivery", gap.Round(time.Millisecond)), r.s.Path, r.kills)
	}
	if gap > r.bound+wedgeGrace {
		r.wedged = true
		r.rep.Note("no delivery for %v: the queue looks wedged; the kills stopped and the queue was shut down early", gap.Round(time.Millisecond))
		r.stopChaos()
	}
}
