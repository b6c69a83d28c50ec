package main

// In-process throughput: P producer goroutines and C consumer goroutines
// pass N 8-byte messages through one mechanism; the cost is wall time per
// message. Every mechanism has the same capacity and its loops are written
// out directly (no interface in the hot path).

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/Workiva/go-datastructures/queue"
	"github.com/shmq/mpmc"
)

// In-process mechanism names.
const (
	mechChan     = "chan"
	mechCondRing = "mutex+cond ring"
	mechWorkiva  = "workiva RingBuffer"
)

// inprocMechs lists the in-process mechanisms in display order.
var inprocMechs = []string{mechQueue, mechChan, mechCondRing, mechWorkiva, mechQueueSpin, mechRef}

// inprocCase is one in-process configuration.
type inprocCase struct {
	Mech string
	P, C int
}

func (ic inprocCase) key() string { return fmt.Sprintf("%s/%dx%d", ic.Mech, ic.P, ic.C) }

// spinLoops are the producer and consumer loops of a spinning end (mpmc's
// Try calls or the reference): 64-byte messages, each goroutine with its
// own buffer in cache lines of its own (adjacent buffers made the reference
// look 5x slower). E is a type parameter, not an interface value: the two
// ends are structs of different underlying types, so each gets its own
// instantiation and direct calls.
func spinLoops[E spinEnd](e E, perP, perC int) (prod, cons func(int) error) {
	prod = func(int) error {
		msg := paddedBuf()
		for i := range perP {
			binary.LittleEndian.PutUint64(msg, uint64(i))
			if err := e.send(msg); err != nil {
				return err
			}
		}
		return nil
	}
	cons = func(int) error {
		buf := paddedBuf()
		for range perC {
			if _, err := e.recv(buf); err != nil {
				return err
			}
		}
		return nil
	}
	return prod, cons
}

// spinEnd is what spinLoops needs of an end.
type spinEnd interface {
	send(msg []byte) error
	recv(buf []byte) (int, error)
}

// paddedBuf returns a 64-byte buffer with a cache line of nothing on each
// side, so that no other goroutine's data shares its line.
func paddedBuf() []byte { return make([]byte, 192)[64:128:128] }

// runInproc passes n messages (rounded down to a multiple of P and C) and
// returns nanoseconds per message.
func runInproc(ic inprocCase, n int) (float64, error) {
	n -= n % (ic.P * ic.C)
	perP, perC := n/ic.P, n/ic.C
	var prod func(id int) error
	var cons func(id int) error
	var teardown func()
	var q *mpmc.Queue
	if ic.Mech == mechQueue || ic.Mech == mechQueueSpin || ic.Mech == mechQueueBatch {
		var err error
		if q, teardown, err = newQueue("inproc", queueCapacity, 64); err != nil {
			return 0, err
		}
	}
	switch ic.Mech {
	case mechQueue:
		ctx := context.Background()
		prod = func(id int) error {
			var msg [8]byte
			for i := range perP {
				binary.LittleEndian.PutUint64(msg[:], uint64(i))
				if err := q.Enqueue(ctx, msg[:]); err != nil {
					return err
				}
			}
			return nil
		}
		cons = func(id int) error {
			var buf [64]byte
			for range perC {
				if _, err := q.Dequeue(ctx, buf[:]); err != nil {
					return err
				}
			}
			return nil
		}
	case mechQueueSpin:
		prod, cons = spinLoops(queueSpinEnd{q}, perP, perC)
	case mechQueueBatch:
		remove := teardown
		p, c, closeAll, err := batchLoops(q.Path(), ic.P, ic.C, perP, perC)
		if err != nil {
			remove()
			return 0, err
		}
		prod, cons, teardown = p, c, func() { closeAll(); remove() }
	case mechRef:
		r, remove, err := newRef("inproc-ref", queueCapacity)
		if err != nil {
			return 0, err
		}
		teardown = remove
		prod, cons = spinLoops(refEnd{r}, perP, perC)
	case mechChan:
		ch := make(chan uint64, queueCapacity)
		prod = func(id int) error {
			for i := range perP {
				ch <- uint64(i)
			}
			return nil
		}
		cons = func(id int) error {
			for range perC {
				<-ch
			}
			return nil
		}
	case mechCondRing:
		r := newCondRing(queueCapacity)
		prod = func(id int) error {
			for i := range perP {
				r.put(uint64(i))
			}
			return nil
		}
		cons = func(id int) error {
			for range perC {
				r.get()
			}
			return nil
		}
	case mechWorkiva:
		rb := queue.NewRingBuffer(queueCapacity)
		teardown = rb.Dispose
		prod = func(id int) error {
			for i := range perP {
				// Values below 256 are boxed without allocating.
				if err := rb.Put(uint64(i & 0xff)); err != nil {
					return err
				}
			}
			return nil
		}
		cons = func(id int) error {
			for range perC {
				if _, err := rb.Get(); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		return 0, fmt.Errorf("unknown mechanism %q", ic.Mech)
	}
	if teardown != nil {
		defer teardown()
	}
	var wg sync.WaitGroup
	errs := make(chan error, ic.P+ic.C)
	start := time.Now()
	for i := range ic.C {
		wg.Go(func() { errs <- cons(i) })
	}
	for i := range ic.P {
		wg.Go(func() { errs <- prod(i) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, fmt.Errorf("%s: %w", ic.key(), err)
		}
	}
	return float64(elapsed.Nanoseconds()) / float64(n), nil
}
