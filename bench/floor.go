package main

// The floor: one uncontended TryEnqueue+TryDequeue pair of 64-byte messages
// on one goroutine, on a queue in /dev/shm, for mpmc and for the reference
// Vyukov queue. No cross-process transfer can be cheaper than this with a
// one-message-per-call API.

import (
	"fmt"
	"time"

	"github.com/shmq/mpmc"
)

// pairer does one enqueue+dequeue pair.
type pairer interface {
	pair(msg, buf []byte) error
}

type mpmcPair struct{ q *mpmc.Queue }

func (p mpmcPair) pair(msg, buf []byte) error {
	if err := p.q.TryEnqueue(msg); err != nil {
		return err
	}
	_, err := p.q.TryDequeue(buf)
	return err
}

type refPair struct{ q *refQueue }

func (p refPair) pair(msg, buf []byte) error {
	if err := p.q.tryEnqueue(msg); err != nil {
		return err
	}
	_, err := p.q.tryDequeue(buf)
	return err
}

// runFloor returns nanoseconds per pair over n pairs on mech (mechQueue or
// mechRef).
func runFloor(mech string, n int) (float64, error) {
	switch mech {
	case mechQueue:
		q, remove, err := newQueue("floor", queueCapacity, pingSize)
		if err != nil {
			return 0, err
		}
		defer remove()
		return timePairs(mpmcPair{q}, n)
	case mechRef:
		q, remove, err := newRef("floor", queueCapacity)
		if err != nil {
			return 0, err
		}
		defer remove()
		return timePairs(refPair{q}, n)
	}
	return 0, fmt.Errorf("floor: unknown mechanism %q", mech)
}

// timePairs warms up, then times n pairs; the message and the receive
// buffer lie in cache lines of their own.
func timePairs[P pairer](p P, n int) (float64, error) {
	msg, buf := paddedBuf(), paddedBuf()
	loop := func(n int) error {
		for range n {
			if err := p.pair(msg, buf); err != nil {
				return fmt.Errorf("floor: %w", err)
			}
		}
		return nil
	}
	if err := loop(min(n/10, 10000)); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := loop(n); err != nil {
		return 0, err
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n), nil
}
