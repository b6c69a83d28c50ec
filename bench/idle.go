package main

// CPU used by a consumer blocked on an empty queue: a child process calls
// Dequeue with a deadline a few seconds away and reports its own CPU time
// (user + system, from getrusage) over that wait.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// idleArgs are the arguments of the idle child.
type idleArgs struct {
	Path string
	For  time.Duration
}

// idleResult is the idle child's report.
type idleResult struct {
	CPUNs  int64 // user + system time during the wait
	WallNs int64 // length of the wait
}

func rusageNs() (int64, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), nil
}

// idleRole is the blocked consumer.
var idleRole = newRole("idle", idleConsumer)

func idleConsumer(c *childIO, a idleArgs) (any, error) {
	q, err := c.openQueueReady(a.Path)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	buf := make([]byte, 64)
	cpu0, err := rusageNs()
	if err != nil {
		return nil, err
	}
	t0 := nanotime()
	ctx, cancel := context.WithTimeout(context.Background(), a.For)
	defer cancel()
	_, err = q.Dequeue(ctx, buf)
	t1 := nanotime()
	cpu1, rerr := rusageNs()
	if !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("Dequeue on an empty queue returned %v, want a deadline error", err)
	}
	if rerr != nil {
		return nil, rerr
	}
	return idleResult{CPUNs: cpu1 - cpu0, WallNs: t1 - t0}, nil
}

// idleOutcome is one blocked-consumer measurement.
type idleOutcome struct {
	CorePercent float64 // CPU time over wall time, in % of one core
	CPUNs       int64
	WallNs      int64
	Sleeps      uint64 // consumer futex sleeps during the wait
}

// runIdle measures one consumer blocked on an empty queue for d.
func runIdle(ctx context.Context, d time.Duration) (out idleOutcome, err error) {
	q, remove, err := newQueue("idle", queueCapacity, 64)
	if err != nil {
		return out, err
	}
	defer remove()
	var r idleResult
	if err := idleRole.run(ctx, idleArgs{Path: q.Path(), For: d}, d+50*time.Second, &r); err != nil {
		return out, err
	}
	out.CPUNs, out.WallNs = r.CPUNs, r.WallNs
	out.CorePercent = 100 * float64(r.CPUNs) / float64(r.WallNs)
	out.Sleeps = q.Stats().ConsumerSleeps
	return out, nil
}
