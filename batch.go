package mpmc

import "context"

// TryEnqueueBatch enqueues the longest prefix of msgs that fits now, in
// order, and returns how many it enqueued: (len(msgs), nil); (n, ErrFull)
// when only n fit (n may be 0); (n, ErrTooLarge) when msgs[n] is longer than
// SlotSize (the messages before it are enqueued); (0, ErrClosed) after Close
// or Shutdown.
//
// The prefix is claimed with one atomic operation, so its messages occupy
// consecutive positions: no other producer's message comes between them. A
// batch longer than the capacity (or than 32768 messages) takes one claim per
// such part; between those, other producers' messages may come.
func (q *Queue) TryEnqueueBatch(msgs [][]byte) (int, error) {
	fit, bytes := q.fitting(msgs)
	n, err := q.tryEnqueue(msgs[:fit], bytes)
	if err == nil && fit < len(msgs) {
		err = q.tooLarge(len(msgs[fit]))
	}
	return n, err
}

// fitting returns how many of msgs, from the first, are no longer than
// SlotSize, and their total size.
func (q *Queue) fitting(msgs [][]byte) (int, int) {
	bytes := 0
	for i, m := range msgs {
		if uint64(len(m)) > q.ring.slotSize {
			return i, bytes
		}
		bytes += len(m)
	}
	return len(msgs), bytes
}

// EnqueueBatch enqueues all of msgs in order, waiting for room as needed,
// and returns how many it enqueued: fewer than len(msgs) only with an error
// (ctx.Err(), ErrClosed, or ErrTooLarge for msgs[n]). Each part that found
// room at once is contiguous, as with TryEnqueueBatch; when it waits, other
// producers' messages may come between the parts.
func (q *Queue) EnqueueBatch(ctx context.Context, msgs [][]byte) (int, error) {
	fit, bytes := q.fitting(msgs)
	done, err := q.tryEnqueue(msgs[:fit], bytes)
	if err == ErrFull {
		done, err = q.enqueueWait(ctx, msgs[:fit], done, bytes)
	}
	if err == nil && fit < len(msgs) {
		err = q.tooLarge(len(msgs[fit]))
	}
	return done, err
}

// TryDequeueBatch takes up to min(len(bufs), len(sizes)) messages available
// now, without waiting: message i is copied into bufs[i] and its length
// stored in sizes[i]. It returns how many: (0, ErrEmpty) when there is
// none; (n, io.ErrShortBuffer) when bufs[n] is too short for the next
// message, which stays queued; (0, ErrClosed) after Close, or after
// Shutdown once the queue is drained. The messages it returns were taken
// with one atomic operation where they were published at once.
func (q *Queue) TryDequeueBatch(bufs [][]byte, sizes []int) (int, error) {
	k := min(len(bufs), len(sizes))
	return q.tryDequeue(bufs[:k], sizes[:k], k*int(q.ring.slotSize))
}

// DequeueBatch waits until at least one message is available, then takes
// those available, up to min(len(bufs), len(sizes)), as TryDequeueBatch
// does. It returns ctx.Err() if ctx is done first.
func (q *Queue) DequeueBatch(ctx context.Context, bufs [][]byte, sizes []int) (int, error) {
	k := min(len(bufs), len(sizes))
	bufs, sizes = bufs[:k], sizes[:k]
	n, err := q.tryDequeue(bufs, sizes, k*int(q.ring.slotSize))
	if err != ErrEmpty || k == 0 {
		return n, err
	}
	return q.dequeueWait(ctx, bufs, sizes, k*int(q.ring.slotSize))
}
