package main

// The cross-process children of mpmc's bulk calls: batches of 32
// (EnqueueBatch/DequeueBatch), zero-copy (Reserve/Commit, Take/Release) and
// its copying counterpart (Enqueue/Dequeue, with the same work on the
// message as zero-copy). They are throughput cases (tputCase) like any
// other: runTput sets the queue up, starts these roles instead of the
// per-message ones, ends the stream with Shutdown and checks that every
// message sent was received.

import (
	"context"
	"errors"
	"fmt"

	"github.com/shmq/mpmc"
)

// The two ends of a bulk run.
var (
	bulkProdRole = newRole("bulk-prod", bulkProducer)
	bulkConsRole = newRole("bulk-cons", bulkConsumer)
)

// isBulk reports whether mech is one of mpmc's bulk modes, measured by the
// bulk roles and reported in tables of their own.
func isBulk(mech string) bool {
	return mech == mechQueueBatch || mech == mechZeroCopy || mech == mechCopy
}

// tputRoles returns the producer and consumer roles of mech.
func tputRoles(mech string) (prod, cons role[tputArgs]) {
	if isBulk(mech) {
		return bulkProdRole, bulkConsRole
	}
	return tputProdRole, tputConsRole
}

// A step sends from, or receives, message #n on and returns how many
// messages it passed; a receiving step returns errEOS at the end of the
// stream.
type step func(n int64) (int, error)

// bulkOpen opens the queue and makes a step with mk (its buffers ready
// before the clock starts), then says ready, waits for the start signal and
// returns the start time too. The caller closes the queue.
func bulkOpen(c *childIO, a tputArgs, mk func(*mpmc.Queue, tputArgs) step) (*mpmc.Queue, step, int64, error) {
	q, err := mpmc.Open(a.Path)
	if err != nil {
		return nil, nil, 0, err
	}
	st := mk(q, a)
	if err := c.ready(); err != nil {
		q.Close()
		return nil, nil, 0, err
	}
	return q, st, nanotime(), nil
}

func bulkProducer(c *childIO, a tputArgs) (any, error) {
	q, put, start, err := bulkOpen(c, a, bulkPut)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	deadline := start + int64(a.Duration)
	var n int64
	// Read the clock once per 256 messages or more.
	for nanotime() < deadline {
		for end := n + 256; n < end; {
			k, err := put(n)
			if err != nil {
				return nil, fmt.Errorf("send #%d: %w", n, err)
			}
			n += int64(k)
		}
	}
	return tputChildResult{Count: n, StartNs: start, StampNs: nanotime()}, q.Close()
}

func bulkConsumer(c *childIO, a tputArgs) (any, error) {
	q, take, start, err := bulkOpen(c, a, bulkTake)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	var n, stamp int64
	for {
		k, err := take(n)
		if err == errEOS {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("receive #%d: %w", n, err)
		}
		// The clock once per 64 messages or more, as tputConsumer.
		if (n+int64(k))>>6 != n>>6 {
			stamp = nanotime()
		}
		n += int64(k)
	}
	if stamp == 0 {
		stamp = nanotime()
	}
	return tputChildResult{Count: n, StartNs: start, StampNs: stamp}, q.Close()
}

// endOfStream turns the queue's ErrClosed (after Shutdown, drained) into
// errEOS.
func endOfStream(err error) error {
	if errors.Is(err, mpmc.ErrClosed) {
		return errEOS
	}
	return err
}

// bulkPut returns the producer's step of a.Mech.
func bulkPut(q *mpmc.Queue, a tputArgs) step {
	ctx := context.Background()
	if a.Mech == mechQueueBatch {
		msgs := batchBufs(a.Size)
		return func(n int64) (int, error) {
			stampBatch(msgs, n)
			return q.EnqueueBatch(ctx, msgs)
		}
	}
	return slotPut(q, a)
}

// bulkTake returns the consumer's step of a.Mech.
func bulkTake(q *mpmc.Queue, a tputArgs) step {
	if a.Mech != mechQueueBatch {
		return slotTake(q, a)
	}
	ctx := context.Background()
	bufs, sizes := batchBufs(a.Size), make([]int, batchSize)
	return func(n int64) (int, error) {
		k, err := q.DequeueBatch(ctx, bufs, sizes)
		if err != nil {
			return 0, endOfStream(err)
		}
		for i, s := range sizes[:k] {
			if s != a.Size {
				return 0, fmt.Errorf("message #%d is %d bytes, want %d", n+int64(i), s, a.Size)
			}
		}
		return k, nil
	}
}
