package main

// Batches: mpmc's EnqueueBatch/DequeueBatch, 32 messages of 64 bytes per
// call, in one process (goroutines, each with its own handle) and across
// processes (the producer and consumer loops of bulk.go). Their rates are
// compared with a buffered channel sending one value at a time (in one
// process) and with mpmc's own single-message calls (across processes),
// measured in the same repetition.

import (
	"context"
	"encoding/binary"

	"github.com/shmq/mpmc"
)

const (
	// mechQueueBatch is mpmc driven by EnqueueBatch/DequeueBatch.
	mechQueueBatch = "mpmc batches of 32"
	// batchSize is the messages per batch call (and the buffers a
	// consumer offers DequeueBatch).
	batchSize = 32
	// batchMsgSize is the message size of the in-process batch runs.
	batchMsgSize = 64
)

// batchBufs returns batchSize buffers of size bytes each, cut from one
// allocation.
func batchBufs(size int) [][]byte {
	mem := make([]byte, batchSize*size)
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs
}

// stampBatch writes the sequence numbers first, first+1, ... into the first
// 8 bytes of each message: the producer makes every message anew.
func stampBatch(msgs [][]byte, first int64) {
	for i, m := range msgs {
		binary.LittleEndian.PutUint64(m, uint64(first)+uint64(i))
	}
}

// batchLoops are the in-process batch loops over the queue at path: p
// producers each sending perP messages and c consumers each taking perC,
// each goroutine on a handle of its own (opened here, before the clock
// starts; closeAll closes them).
func batchLoops(path string, p, c, perP, perC int) (prod, cons func(int) error, closeAll func(), err error) {
	var hs []*mpmc.Queue
	closeAll = func() {
		for _, h := range hs {
			h.Close()
		}
	}
	for range p + c {
		h, err := mpmc.Open(path)
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		hs = append(hs, h)
	}
	ctx := context.Background()
	prod = func(id int) error {
		q, msgs := hs[id], batchBufs(batchMsgSize)
		for sent := 0; sent < perP; {
			part := msgs[:min(batchSize, perP-sent)]
			stampBatch(part, int64(sent))
			n, err := q.EnqueueBatch(ctx, part)
			if err != nil {
				return err
			}
			sent += n
		}
		return nil
	}
	cons = func(id int) error {
		q, bufs, sizes := hs[p+id], batchBufs(batchMsgSize), make([]int, batchSize)
		for got := 0; got < perC; {
			k := min(batchSize, perC-got)
			n, err := q.DequeueBatch(ctx, bufs[:k], sizes[:k])
			if err != nil {
				return err
			}
			got += n
		}
		return nil
	}
	return prod, cons, closeAll, nil
}
