package main

// OS threads of a process whose goroutines are all blocked in Dequeue: a
// child starts G goroutines on an empty queue, waits until they have given
// up spinning, and reads Threads: from /proc/self/status.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// threadsArgs are the arguments of the threads child.
type threadsArgs struct {
	Path       string
	Goroutines int
	Settle     time.Duration // how long to let the goroutines settle
}

// threadsResult is the threads child's report.
type threadsResult struct {
	Before     int // threads before the goroutines started
	Blocked    int // threads while they are all blocked
	Goroutines int // runtime.NumGoroutine while blocked
}

// osThreads returns the Threads: line of /proc/self/status.
func osThreads() (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
			return strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return 0, errors.New("no Threads: line in /proc/self/status")
}

// threadsRole is the process of many blocked goroutines.
var threadsRole = newRole("threads", blockedThreads)

func blockedThreads(c *childIO, a threadsArgs) (any, error) {
	q, err := c.openQueueReady(a.Path)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	var r threadsResult
	if r.Before, err = osThreads(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, a.Goroutines)
	for range a.Goroutines {
		wg.Go(func() {
			buf := make([]byte, 64)
			_, err := q.Dequeue(ctx, buf)
			if !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("Dequeue on an empty queue returned %v", err)
			}
		})
	}
	// Wait until the queue records a sleeper, then let the rest settle.
	deadline := time.Now().Add(a.Settle + 10*time.Second)
	for q.Stats().ConsumerSleeps == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(a.Settle)
	r.Goroutines = runtime.NumGoroutine()
	r.Blocked, err = osThreads()
	cancel()
	wg.Wait()
	close(errs)
	if err != nil {
		return nil, err
	}
	for e := range errs {
		return nil, e
	}
	return r, nil
}

// runThreads measures the threads of a process with g goroutines blocked in
// Dequeue.
func runThreads(ctx context.Context, g int, settle time.Duration) (r threadsResult, err error) {
	q, remove, err := newQueue("threads", queueCapacity, 64)
	if err != nil {
		return r, err
	}
	defer remove()
	err = threadsRole.run(ctx, threadsArgs{Path: q.Path(), Goroutines: g, Settle: settle}, settle+50*time.Second, &r)
	return r, err
}
