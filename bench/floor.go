package main

// The floor: one uncontended TryEnqueue+TryDequeue pair of 64-byte messages
// on one goroutine, on a queue in /dev/shm. No cross-process transfer can be
// cheaper than this with a one-message-per-call API.

import (
	"fmt"
	"time"

	"github.com/shmq/mpmc"
)

// runFloor returns nanoseconds per TryEnqueue+TryDequeue pair over n pairs.
func runFloor(n int) (float64, error) {
	path := shmPath("floor")
	defer done(path)
	q, err := mpmc.Create(path, mpmc.Config{Capacity: queueCapacity, SlotSize: pingSize})
	if err != nil {
		return 0, err
	}
	defer q.Close()
	msg, buf := make([]byte, pingSize), make([]byte, pingSize)
	loop := func(n int) error {
		for range n {
			if err := q.TryEnqueue(msg); err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			if _, err := q.TryDequeue(buf); err != nil {
				return fmt.Errorf("floor: %w", err)
			}
		}
		return nil
	}
	if err := loop(min(n/10, 10000)); err != nil { // warm up
		return 0, err
	}
	start := time.Now()
	if err := loop(n); err != nil {
		return 0, err
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n), nil
}
