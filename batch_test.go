package mpmc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func strs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func bufs(n, size int) ([][]byte, []int) {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, size)
	}
	return b, make([]int, n)
}

func got(b [][]byte, sizes []int, n int) []string {
	var out []string
	for i := range n {
		out = append(out, string(b[i][:sizes[i]]))
	}
	return out
}

func TestTryEnqueueBatch(t *testing.T) {
	q, _ := newTestQueue(t, 4, 8)
	n, err := q.TryEnqueueBatch(strs("a", "b"))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	// Only two fit: the longest prefix goes in.
	n, err = q.TryEnqueueBatch(strs("c", "d", "e"))
	assert.ErrorIs(t, err, ErrFull)
	assert.Equal(t, 2, n)
	n, err = q.TryEnqueueBatch(strs("f"))
	assert.ErrorIs(t, err, ErrFull)
	assert.Equal(t, 0, n)

	b, sizes := bufs(8, 8)
	n, err = q.TryDequeueBatch(b, sizes)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c", "d"}, got(b, sizes, n))
	n, err = q.TryDequeueBatch(b, sizes)
	assert.ErrorIs(t, err, ErrEmpty)
	assert.Equal(t, 0, n)

	// A message too large stops the batch before it.
	n, err = q.TryEnqueueBatch(strs("x", "123456789", "y"))
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Equal(t, 1, n)
	assert.Equal(t, 1, q.Len())
	n, err = q.TryEnqueueBatch(nil)
	assert.NoError(t, err)
	assert.Equal(t, 0, n)
}

func TestTryDequeueBatchShortBuffer(t *testing.T) {
	q, _ := newTestQueue(t, 8, 16)
	_, err := q.TryEnqueueBatch(strs("one", "two", "a longer one", "four"))
	require.NoError(t, err)
	b, sizes := bufs(4, 4)
	n, err := q.TryDequeueBatch(b, sizes)
	assert.ErrorIs(t, err, io.ErrShortBuffer)
	assert.Equal(t, []string{"one", "two"}, got(b, sizes, n))
	n, err = q.TryDequeueBatch(b, sizes)
	assert.ErrorIs(t, err, io.ErrShortBuffer, "the long message stays queued")
	assert.Equal(t, 0, n)
	b[0] = make([]byte, 16)
	n, err = q.TryDequeueBatch(b, sizes)
	require.NoError(t, err)
	assert.Equal(t, []string{"a longer one", "four"}, got(b, sizes, n))
	// The smaller of len(bufs) and len(sizes) bounds the batch.
	_, err = q.TryEnqueueBatch(strs("5", "6", "7"))
	require.NoError(t, err)
	n, err = q.TryDequeueBatch(b, sizes[:1])
	require.NoError(t, err)
	assert.Equal(t, []string{"5"}, got(b, sizes, n))
}

func TestBatchShutdown(t *testing.T) {
	q, _ := newTestQueue(t, 4, 8)
	_, err := q.TryEnqueueBatch(strs("a", "b"))
	require.NoError(t, err)
	require.NoError(t, q.Shutdown())
	n, err := q.TryEnqueueBatch(strs("c"))
	assert.ErrorIs(t, err, ErrClosed)
	assert.Equal(t, 0, n)
	b, sizes := bufs(4, 8)
	n, err = q.TryDequeueBatch(b, sizes)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, got(b, sizes, n))
	n, err = q.TryDequeueBatch(b, sizes)
	assert.ErrorIs(t, err, ErrClosed)
	assert.Equal(t, 0, n)
	n, err = q.DequeueBatch(context.Background(), b, sizes)
	assert.ErrorIs(t, err, ErrClosed)
	assert.Equal(t, 0, n)
}

func TestBatchSkipsGivenUpSlots(t *testing.T) {
	// A reservation given up in the middle of the queue is passed over by
	// a batch, which returns the messages around it.
	q, _ := newTestQueue(t, 8, 8)
	require.NoError(t, q.TryEnqueue([]byte("a")))
	r, err := q.TryReserve()
	require.NoError(t, err)
	require.NoError(t, r.Abort())
	require.NoError(t, q.TryEnqueue([]byte("b")))
	b, sizes := bufs(4, 8)
	n, err := q.TryDequeueBatch(b, sizes)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, got(b, sizes, n))
	assert.Equal(t, uint64(1), q.Stats().SkippedSlots)
}

// blockingPair creates a queue of capacity 8-byte slots and joins it
// with a second handle, both with no spinning (so that blocking calls
// sleep at once), and a context of 30 seconds for their calls.
func blockingPair(t *testing.T, capacity int) (q, cons *Queue, ctx context.Context) {
	t.Helper()
	q, p := newTestQueue(t, capacity, 8)
	q.SetSpin(0)
	cons = openTestQueue(t, p)
	cons.SetSpin(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return q, cons, ctx
}

func TestBlockingBatches(t *testing.T) {
	// EnqueueBatch of more than the capacity waits for room and delivers
	// every message, in order; DequeueBatch waits for the first.
	q, cons, ctx := blockingPair(t, 4)
	const total = 1000
	msgs := make([][]byte, total)
	for i := range msgs {
		msgs[i] = []byte(fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		n, err := q.EnqueueBatch(ctx, msgs)
		assert.NoError(t, err)
		assert.Equal(t, total, n)
	})
	b, sizes := bufs(3, 8)
	var all []string
	for len(all) < total {
		n, err := cons.DequeueBatch(ctx, b, sizes)
		require.NoError(t, err)
		require.Positive(t, n)
		all = append(all, got(b, sizes, n)...)
	}
	wg.Wait()
	for i, m := range all {
		require.Equal(t, fmt.Sprint(i), m)
	}
	// Both sides slept at times on so small a queue; nothing is left.
	n, err := cons.TryDequeueBatch(b, sizes)
	assert.ErrorIs(t, err, ErrEmpty)
	assert.Equal(t, 0, n)
	// A context ends a wait.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	_, err = cons.DequeueBatch(short, b, sizes)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestBatchesAreContiguous(t *testing.T) {
	// Producers enqueue batches of 4 concurrently. A batch that only
	// partly fits goes in as a prefix; whatever one TryEnqueueBatch call
	// put in (one claim: a batch is shorter than the capacity) arrives as
	// consecutive messages, never interleaved with another producer's.
	q, p := newTestQueue(t, 16, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type run struct{ id, i, j, n byte }
	var mu sync.Mutex
	var runs []run
	var wg sync.WaitGroup
	const producersN, batches = 3, 200
	for id := range producersN {
		h := openTestQueue(t, p)
		wg.Go(func() {
			for i := range batches {
				var batch [][]byte
				for j := range 4 {
					batch = append(batch, []byte{byte(id), byte(i), byte(j)})
				}
				for len(batch) > 0 {
					n, err := h.TryEnqueueBatch(batch)
					if n > 0 {
						mu.Lock()
						runs = append(runs, run{byte(id), byte(i), batch[0][2], byte(n)})
						mu.Unlock()
					}
					if err != nil && !assert.ErrorIs(t, err, ErrFull) {
						return
					}
					batch = batch[n:]
					if err != nil {
						time.Sleep(10 * time.Microsecond)
					}
				}
			}
		})
	}
	buf := make([]byte, 8)
	where := map[[3]byte]int{}
	for len(where) < producersN*batches*4 {
		n, err := q.Dequeue(ctx, buf)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		where[[3]byte(buf[:3])] = len(where)
	}
	wg.Wait()
	require.NotEmpty(t, runs)
	for _, r := range runs {
		first := where[[3]byte{r.id, r.i, r.j}]
		for k := range r.n {
			assert.Equal(t, first+int(k), where[[3]byte{r.id, r.i, r.j + k}], "run %+v", r)
		}
	}
}

func TestZeroCopy(t *testing.T) {
	q, _ := newTestQueue(t, 4, 16)
	r, err := q.TryReserve()
	require.NoError(t, err)
	require.Len(t, r.Bytes(), 16)
	n := copy(r.Bytes(), "in place")
	_, err = q.TryTake()
	assert.ErrorIs(t, err, ErrEmpty, "not published before Commit")
	assert.ErrorIs(t, r.Commit(17), ErrTooLarge)
	require.NoError(t, r.Commit(n))
	assert.ErrorIs(t, r.Commit(n), ErrNotHeld)
	assert.ErrorIs(t, r.Abort(), ErrNotHeld)
	assert.Nil(t, r.Bytes())

	tk, err := q.TryTake()
	require.NoError(t, err)
	assert.Equal(t, "in place", string(tk.Bytes()))
	assert.Equal(t, uint64(0), tk.ID())
	_, err = q.TryTake()
	assert.ErrorIs(t, err, ErrEmpty)
	assert.False(t, tk.Redelivered())
	// While the message is held, Close refuses.
	assert.ErrorIs(t, q.Close(), ErrBusy)
	require.NoError(t, tk.Release())
	assert.ErrorIs(t, tk.Release(), ErrNotHeld)
	_, err = q.TryTake()
	assert.ErrorIs(t, err, ErrEmpty)

	// A copy of a finished hold is not held either.
	r, err = q.TryReserve()
	require.NoError(t, err)
	cp := r
	require.NoError(t, r.Abort())
	assert.ErrorIs(t, cp.Commit(1), ErrNotHeld)
	_, err = q.TryTake()
	assert.ErrorIs(t, err, ErrEmpty, "an aborted reservation is passed over")

	// Holds are bounded per handle.
	var held []Reservation
	for {
		r, err := q.TryReserve()
		if err != nil {
			assert.ErrorIs(t, err, ErrFull)
			break
		}
		held = append(held, r)
	}
	assert.Len(t, held, 4)
	for i := range held {
		require.NoError(t, held[i].Commit(0))
	}
}

func TestZeroCopyHoldLimit(t *testing.T) {
	q, _ := newTestQueue(t, 64, 8)
	var held []Reservation
	var err error
	for range maxHolds + 1 {
		var r Reservation
		if r, err = q.TryReserve(); err != nil {
			break
		}
		held = append(held, r)
	}
	assert.ErrorIs(t, err, ErrBusy)
	assert.Len(t, held, maxHolds)
	for i := range held {
		require.NoError(t, held[i].Commit(0))
	}
	require.NoError(t, q.Close())
	_, err = q.TryReserve()
	assert.ErrorIs(t, err, ErrClosed)
}

func TestZeroCopyBlocking(t *testing.T) {
	q, cons, ctx := blockingPair(t, 2)
	var wg sync.WaitGroup
	const total = 200
	wg.Go(func() {
		for i := range total {
			r, err := q.Reserve(ctx)
			if !assert.NoError(t, err) {
				return
			}
			r.Bytes()[0] = byte(i)
			assert.NoError(t, r.Commit(1))
		}
	})
	for i := range total {
		tk, err := cons.Take(ctx)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, tk.Bytes())
		require.NoError(t, tk.Release())
	}
	wg.Wait()
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	_, err := cons.Take(short)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, q.Shutdown())
	_, err = q.Reserve(ctx)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = cons.Take(ctx)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestNoAllocations(t *testing.T) {
	q, _ := newTestQueue(t, 8, 64)
	msg, buf := make([]byte, 64), make([]byte, 64)
	b, sizes := bufs(4, 64)
	batch := [][]byte{msg, msg, msg}
	allocs := testing.AllocsPerRun(100, func() {
		if err := q.TryEnqueue(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := q.TryDequeue(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := q.TryEnqueueBatch(batch); err != nil {
			t.Fatal(err)
		}
		if _, err := q.TryDequeueBatch(b, sizes); err != nil {
			t.Fatal(err)
		}
		r, err := q.TryReserve()
		if err != nil {
			t.Fatal(err)
		}
		copy(r.Bytes(), msg)
		if err := r.Commit(len(msg)); err != nil {
			t.Fatal(err)
		}
		tk, err := q.TryTake()
		if err != nil {
			t.Fatal(err)
		}
		if err := tk.Release(); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

var _ = errors.Is
