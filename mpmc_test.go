package mpmc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	// A child process started by a multi-process test (process_test.go)
	// runs its role instead of the tests.
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

var pathSeq atomic.Int64

// segPath returns a fresh path under /dev/shm for the test and removes
// whatever is there when the test ends.
func segPath(t testing.TB) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	p := fmt.Sprintf("/dev/shm/mpmc-test-%d-%d-%s", os.Getpid(), pathSeq.Add(1), name)
	t.Cleanup(func() { os.Remove(p) })
	return p
}

// newQueue creates a queue for the test and closes it when the test ends.
func newTestQueue(t testing.TB, capacity, slotSize int) (*Queue, string) {
	t.Helper()
	p := segPath(t)
	q, err := Create(p, Config{Capacity: capacity, SlotSize: slotSize})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return q, p
}

func openTestQueue(t testing.TB, path string) *Queue {
	t.Helper()
	q, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return q
}

// recvWithin returns the next value from ch, failing the test with msg if
// none comes within d.
func recvWithin[T any](t testing.TB, ch <-chan T, d time.Duration, msg string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatal(msg)
		panic("unreachable")
	}
}

func TestCreateInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"zero config", Config{}},
		{"capacity 0", Config{Capacity: 0, SlotSize: 8}},
		{"capacity 1", Config{Capacity: 1, SlotSize: 8}},
		{"capacity not a power of two", Config{Capacity: 12, SlotSize: 8}},
		{"negative capacity", Config{Capacity: -4, SlotSize: 8}},
		{"capacity too large", Config{Capacity: 1 << 31, SlotSize: 8}},
		{"slot size 0", Config{Capacity: 4, SlotSize: 0}},
		{"negative slot size", Config{Capacity: 4, SlotSize: -1}},
		{"slot size too large", Config{Capacity: 4, SlotSize: 1<<30 + 1}},
		{"segment too large", Config{Capacity: 1 << 30, SlotSize: 1 << 20}},
		{"perm with type bits", Config{Capacity: 4, SlotSize: 8, Perm: os.ModeDir | 0o600}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := segPath(t)
			q, err := Create(p, tc.cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Nil(t, q)
			_, statErr := os.Stat(p)
			assert.ErrorIs(t, statErr, fs.ErrNotExist, "a refused Create must not leave a file")
		})
	}
}

func TestCreateExisting(t *testing.T) {
	q, p := newTestQueue(t, 4, 8)
	require.NoError(t, q.TryEnqueue([]byte("keep")))
	_, err := Create(p, Config{Capacity: 4, SlotSize: 8})
	require.ErrorIs(t, err, fs.ErrExist)
	// The existing queue is untouched.
	buf := make([]byte, 8)
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "keep", string(buf[:n]))
}

func TestCreateRace(t *testing.T) {
	p := segPath(t)
	const n = 8
	var wg sync.WaitGroup
	var won atomic.Int32
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			q, err := Create(p, Config{Capacity: 8, SlotSize: 8})
			if err != nil {
				errs <- err
				return
			}
			won.Add(1)
			q.Close()
		})
	}
	wg.Wait()
	close(errs)
	assert.Equal(t, int32(1), won.Load(), "exactly one concurrent Create wins")
	for err := range errs {
		assert.ErrorIs(t, err, fs.ErrExist)
	}
}

func TestCreatePerm(t *testing.T) {
	for _, tc := range []struct {
		perm, want os.FileMode
	}{{0, 0o600}, {0o640, 0o640}, {0o666, 0o666}} {
		t.Run(tc.want.String(), func(t *testing.T) {
			p := segPath(t)
			q, err := Create(p, Config{Capacity: 2, SlotSize: 1, Perm: tc.perm})
			require.NoError(t, err)
			defer q.Close()
			st, err := os.Stat(p)
			require.NoError(t, err)
			assert.Equal(t, tc.want, st.Mode().Perm())
		})
	}
}

func TestGeometryAccessors(t *testing.T) {
	q, p := newTestQueue(t, 16, 100)
	assert.Equal(t, 16, q.Cap())
	assert.Equal(t, 100, q.SlotSize())
	assert.Equal(t, p, q.Path())
	q2 := openTestQueue(t, p)
	assert.Equal(t, 16, q2.Cap())
	assert.Equal(t, 100, q2.SlotSize())
}

func TestFullAndEmpty(t *testing.T) {
	q, _ := newTestQueue(t, 4, 8)
	buf := make([]byte, 8)
	_, err := q.TryDequeue(buf)
	require.ErrorIs(t, err, ErrEmpty)
	for i := range 4 {
		require.NoError(t, q.TryEnqueue([]byte{byte(i)}))
		assert.Equal(t, i+1, q.Len())
	}
	require.ErrorIs(t, q.TryEnqueue([]byte{9}), ErrFull)
	assert.Equal(t, 4, q.Len())
	for i := range 4 {
		n, err := q.TryDequeue(buf)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, buf[:n])
	}
	_, err = q.TryDequeue(buf)
	require.ErrorIs(t, err, ErrEmpty)
	assert.Equal(t, 0, q.Len())
}

func TestMessageSizes(t *testing.T) {
	const slotSize = 100
	q, _ := newTestQueue(t, 8, slotSize)
	for _, size := range []int{0, 1, 15, 16, 17, 63, 64, slotSize - 1, slotSize} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		require.NoError(t, q.TryEnqueue(msg), "size %d", size)
		buf := make([]byte, slotSize)
		n, err := q.TryDequeue(buf)
		require.NoError(t, err)
		require.Equal(t, msg, buf[:n], "size %d", size)
	}
	// A zero-length message is a message, not "empty".
	require.NoError(t, q.TryEnqueue(nil))
	assert.Equal(t, 1, q.Len())
	n, err := q.TryDequeue(nil)
	require.NoError(t, err)
	assert.Equal(t, 0, n)

	err = q.TryEnqueue(make([]byte, slotSize+1))
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "101 bytes")
	assert.Equal(t, 0, q.Len(), "a refused message takes no slot")
	err = q.Enqueue(context.Background(), make([]byte, slotSize+1))
	require.ErrorIs(t, err, ErrTooLarge)
}

func TestShortBuffer(t *testing.T) {
	q, _ := newTestQueue(t, 4, 16)
	require.NoError(t, q.TryEnqueue([]byte("0123456789")))
	require.NoError(t, q.TryEnqueue([]byte("ab")))
	_, err := q.TryDequeue(make([]byte, 9))
	require.ErrorIs(t, err, io.ErrShortBuffer)
	_, err = q.Dequeue(context.Background(), make([]byte, 3))
	require.ErrorIs(t, err, io.ErrShortBuffer)
	assert.Equal(t, 2, q.Len(), "the message stays queued")
	buf := make([]byte, 10)
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "0123456789", string(buf[:n]))
	n, err = q.TryDequeue(buf[:2])
	require.NoError(t, err)
	assert.Equal(t, "ab", string(buf[:n]))
}

func TestWrapAround(t *testing.T) {
	// Many laps of a small ring, with the ring at every fill level.
	q, _ := newTestQueue(t, 4, 8)
	buf := make([]byte, 8)
	next, want := uint64(0), uint64(0)
	for lap := range 2000 {
		fill := lap%4 + 1
		for range fill {
			require.NoError(t, q.TryEnqueue(binary.LittleEndian.AppendUint64(nil, next)))
			next++
		}
		for range fill {
			n, err := q.TryDequeue(buf)
			require.NoError(t, err)
			require.Equal(t, 8, n)
			require.Equal(t, want, binary.LittleEndian.Uint64(buf))
			want++
		}
	}
	st := q.Stats()
	assert.Equal(t, next, st.EnqueuePos)
	assert.Equal(t, next, st.DequeuePos)
}

func TestSequenceWrap(t *testing.T) {
	// Start the positions just below the 62-bit sequence limit and run
	// well past it: comparisons by signed difference must not care.
	for _, start := range []uint64{1<<62 - 6, 1<<62 + 1<<61 - 6} {
		t.Run(fmt.Sprintf("%#x", start), func(t *testing.T) {
			q, _ := newTestQueue(t, 4, 8)
			q.ring.pos[producers].Store(start)
			q.ring.pos[consumers].Store(start)
			for i := range uint64(4) {
				q.ring.slot(start + i).seq.Store(seqWord(start+i, 0))
			}
			buf := make([]byte, 8)
			var model []uint64
			for i := range uint64(60) {
				err := q.TryEnqueue(binary.LittleEndian.AppendUint64(nil, i))
				if len(model) == 4 {
					require.ErrorIs(t, err, ErrFull)
				} else {
					require.NoError(t, err)
					model = append(model, i)
				}
				if i%3 == 0 {
					n, err := q.TryDequeue(buf)
					require.NoError(t, err)
					require.Equal(t, model[0], binary.LittleEndian.Uint64(buf[:n]))
					model = model[1:]
				}
				require.Equal(t, len(model), q.Len())
			}
			for len(model) > 0 {
				n, err := q.TryDequeue(buf)
				require.NoError(t, err)
				require.Equal(t, model[0], binary.LittleEndian.Uint64(buf[:n]))
				model = model[1:]
			}
			_, err := q.TryDequeue(buf)
			require.ErrorIs(t, err, ErrEmpty)
		})
	}
}

func TestSeqDiff(t *testing.T) {
	for _, tc := range []struct {
		seq, pos uint64
		want     int64
	}{
		{5, 5, 0},
		{6, 5, 1},
		{4, 5, -1},
		{0, 1<<62 - 1, 1},        // the sequence wrapped, the position not yet
		{1<<62 - 1, 1 << 62, -1}, // the position wrapped (high bits dropped)
		{1 << 20, 0, 1 << 20},
	} {
		assert.Equal(t, tc.want, seqDiff(seqWord(tc.seq, slotSkipped), tc.pos), "seq %d pos %d", tc.seq, tc.pos)
	}
}

func TestTwoHandles(t *testing.T) {
	q1, p := newTestQueue(t, 8, 32)
	q2 := openTestQueue(t, p)
	require.NoError(t, q1.TryEnqueue([]byte("from one")))
	require.NoError(t, q2.TryEnqueue([]byte("from two")))
	assert.Equal(t, 2, q1.Len())
	assert.Equal(t, 2, q2.Len())
	buf := make([]byte, 32)
	n, err := q2.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "from one", string(buf[:n]))
	n, err = q1.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "from two", string(buf[:n]))
}

func TestShutdown(t *testing.T) {
	q, p := newTestQueue(t, 4, 8)
	other := openTestQueue(t, p)
	require.NoError(t, q.TryEnqueue([]byte("a")))
	require.NoError(t, q.TryEnqueue([]byte("b")))
	require.NoError(t, other.Shutdown())
	require.NoError(t, other.Shutdown(), "Shutdown is idempotent")
	assert.True(t, q.Stats().Shutdown)

	require.ErrorIs(t, q.TryEnqueue([]byte("c")), ErrClosed)
	require.ErrorIs(t, q.Enqueue(context.Background(), []byte("c")), ErrClosed)
	// Dequeues drain what is left, then fail.
	buf := make([]byte, 8)
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "a", string(buf[:n]))
	n, err = q.Dequeue(context.Background(), buf)
	require.NoError(t, err)
	assert.Equal(t, "b", string(buf[:n]))
	_, err = q.TryDequeue(buf)
	require.ErrorIs(t, err, ErrClosed)
	_, err = q.Dequeue(context.Background(), buf)
	require.ErrorIs(t, err, ErrClosed)
	// Too large is still reported as such.
	require.ErrorIs(t, q.TryEnqueue(make([]byte, 9)), ErrTooLarge)

	// A handle opened after Shutdown sees it too.
	late := openTestQueue(t, p)
	require.ErrorIs(t, late.TryEnqueue(nil), ErrClosed)
	_, err = late.TryDequeue(buf)
	require.ErrorIs(t, err, ErrClosed)
}

func TestShutdownWakesSleepers(t *testing.T) {
	q, p := newTestQueue(t, 2, 8)
	other := openTestQueue(t, p)
	q.SetSpin(0)
	// Consumers sleeping on an empty queue...
	const consumers = 5
	errs := make(chan error, 2*consumers)
	for range consumers {
		go func() {
			_, err := q.Dequeue(context.Background(), make([]byte, 8))
			errs <- err
		}()
	}
	waitFor(t, func() bool { return q.Stats().ConsumerSleeps > 0 })
	require.NoError(t, other.Shutdown())
	for range consumers {
		err := recvWithin(t, errs, 10*time.Second, "a sleeping Dequeue did not wake on Shutdown")
		require.ErrorIs(t, err, ErrClosed)
	}
}

func TestShutdownWakesProducers(t *testing.T) {
	q, p := newTestQueue(t, 2, 8)
	other := openTestQueue(t, p)
	q.SetSpin(0)
	require.NoError(t, q.TryEnqueue(nil))
	require.NoError(t, q.TryEnqueue(nil))
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- q.Enqueue(context.Background(), []byte("x")) }()
	}
	waitFor(t, func() bool { return q.Stats().ProducerSleeps > 0 })
	require.NoError(t, other.Shutdown())
	for range 3 {
		err := recvWithin(t, errs, 10*time.Second, "a sleeping Enqueue did not wake on Shutdown")
		require.ErrorIs(t, err, ErrClosed)
	}
	assert.Equal(t, 2, q.Len())
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestContextCancel(t *testing.T) {
	for _, spin := range []time.Duration{0, DefaultSpin, -1} {
		t.Run(fmt.Sprint("spin=", spin), func(t *testing.T) {
			q, _ := newTestQueue(t, 2, 8)
			q.SetSpin(spin)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			_, err := q.Dequeue(ctx, make([]byte, 8))
			require.ErrorIs(t, err, context.DeadlineExceeded)

			require.NoError(t, q.TryEnqueue(nil))
			require.NoError(t, q.TryEnqueue(nil))
			ctx, cancel = context.WithCancel(context.Background())
			go func() { time.Sleep(10 * time.Millisecond); cancel() }()
			err = q.Enqueue(ctx, []byte("x"))
			require.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, 2, q.Len(), "a cancelled Enqueue leaves nothing behind")
		})
	}
}

func TestBlockingHandOver(t *testing.T) {
	for _, spin := range []time.Duration{0, DefaultSpin, -1} {
		t.Run(fmt.Sprint("spin=", spin), func(t *testing.T) {
			q, p := newTestQueue(t, 2, 8)
			cons := openTestQueue(t, p)
			q.SetSpin(spin)
			cons.SetSpin(spin)
			const n = 2000
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 8)
				for i := range uint64(n) {
					k, err := cons.Dequeue(context.Background(), buf)
					if err != nil {
						done <- err
						return
					}
					if got := binary.LittleEndian.Uint64(buf[:k]); got != i {
						done <- fmt.Errorf("got %d, want %d", got, i)
						return
					}
				}
				done <- nil
			}()
			for i := range uint64(n) {
				require.NoError(t, q.Enqueue(context.Background(), binary.LittleEndian.AppendUint64(nil, i)))
			}
			err := recvWithin(t, done, 30*time.Second, "consumer stuck")
			require.NoError(t, err)
		})
	}
}

func TestUseAfterClose(t *testing.T) {
	q, p := newTestQueue(t, 4, 8)
	other := openTestQueue(t, p)
	require.NoError(t, q.TryEnqueue([]byte("x")))
	require.NoError(t, q.Close())
	require.ErrorIs(t, q.Close(), ErrClosed)
	require.ErrorIs(t, q.TryEnqueue(nil), ErrClosed)
	require.ErrorIs(t, q.Enqueue(context.Background(), nil), ErrClosed)
	_, err := q.TryDequeue(make([]byte, 8))
	require.ErrorIs(t, err, ErrClosed)
	_, err = q.Dequeue(context.Background(), make([]byte, 8))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, q.Shutdown(), ErrClosed)
	assert.Equal(t, 0, q.Len())
	assert.Equal(t, Stats{}, q.Stats())
	assert.Equal(t, 4, q.Cap(), "geometry stays readable")

	// Close released only that handle: the queue and its message remain.
	assert.False(t, other.Stats().Shutdown)
	buf := make([]byte, 8)
	n, err := other.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "x", string(buf[:n]))
	_, err = os.Stat(p)
	require.NoError(t, err, "Close does not remove the file")
}

func TestCloseWakesBlocked(t *testing.T) {
	q, p := newTestQueue(t, 2, 8)
	other := openTestQueue(t, p)
	q.SetSpin(0)
	errs := make(chan error, 8)
	for range 4 {
		go func() {
			_, err := q.Dequeue(context.Background(), make([]byte, 8))
			errs <- err
		}()
	}
	waitFor(t, func() bool { return q.Stats().ConsumerSleeps > 0 })
	// A sleeper of another handle must be unaffected.
	otherDone := make(chan error, 1)
	go func() {
		_, err := other.Dequeue(context.Background(), make([]byte, 8))
		otherDone <- err
	}()
	require.NoError(t, q.Close())
	for range 4 {
		err := recvWithin(t, errs, 10*time.Second, "Close did not wake a blocked Dequeue")
		require.ErrorIs(t, err, ErrClosed)
	}
	select {
	case err := <-otherDone:
		t.Fatalf("the other handle's Dequeue returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, other.TryEnqueue([]byte("y")))
	err := recvWithin(t, otherDone, 10*time.Second, "the other handle's Dequeue did not get the message")
	require.NoError(t, err)
}

func TestCloseDuringTraffic(t *testing.T) {
	// Close while goroutines hammer the handle: no call may touch the
	// segment after it is unmapped (that would crash the test binary).
	for range 20 {
		q, _ := newTestQueue(t, 8, 8)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				buf := make([]byte, 8)
				for {
					var err error
					if i%2 == 0 {
						err = q.Enqueue(context.Background(), buf)
					} else {
						_, err = q.Dequeue(context.Background(), buf)
					}
					if errors.Is(err, ErrClosed) {
						return
					}
				}
			})
		}
		time.Sleep(2 * time.Millisecond)
		require.NoError(t, q.Close())
		wg.Wait()
	}
}

func TestStatsCounters(t *testing.T) {
	q, _ := newTestQueue(t, 2, 8)
	q.SetSpin(0)
	st := q.Stats()
	assert.Equal(t, Stats{Capacity: 2, SlotSize: 8}, st)
	got := make(chan error, 1)
	go func() {
		_, err := q.Dequeue(context.Background(), make([]byte, 8))
		got <- err
	}()
	waitFor(t, func() bool { return q.Stats().ConsumerSleeps > 0 })
	require.NoError(t, q.TryEnqueue([]byte("w")))
	require.NoError(t, <-got)
	st = q.Stats()
	assert.GreaterOrEqual(t, st.ConsumerSleeps, uint64(1))
	assert.GreaterOrEqual(t, st.ConsumerWakeups, uint64(1))
	assert.Equal(t, uint64(0), st.ProducerSleeps)
	assert.Equal(t, uint64(1), st.EnqueuePos)
	assert.Equal(t, uint64(1), st.DequeuePos)

	// Under traffic with nobody asleep, no wake-up is made. The sleeper
	// may have left its asleep bit behind (its last retry succeeded after
	// it announced itself): that costs the next claim one wake-up at most.
	before := q.Stats().ConsumerWakeups
	require.NoError(t, q.TryEnqueue(nil))
	_, err := q.TryDequeue(nil)
	require.NoError(t, err)
	assert.LessOrEqual(t, q.Stats().ConsumerWakeups-before, uint64(1))
	before = q.Stats().ConsumerWakeups
	for range 100 {
		require.NoError(t, q.TryEnqueue(nil))
		_, err := q.TryDequeue(nil)
		require.NoError(t, err)
	}
	assert.Equal(t, before, q.Stats().ConsumerWakeups)
}

// TestBlockedGoroutinesThreads shows that goroutines blocked on a queue do
// not each hold an OS thread: one sleeper per handle and side does the futex
// wait for all of them.
func TestBlockedGoroutinesThreads(t *testing.T) {
	q, _ := newTestQueue(t, 2, 8)
	q.SetSpin(0)
	const blocked = 300
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range blocked {
		wg.Go(func() {
			_, err := q.Dequeue(ctx, make([]byte, 8))
			assert.ErrorIs(t, err, context.Canceled)
		})
	}
	waitFor(t, func() bool { return q.wait[consumers].blocked.Load() == blocked })
	time.Sleep(100 * time.Millisecond) // let them settle into their waits
	threads := threadCount(t)
	t.Logf("%d goroutines blocked in Dequeue, process has %d OS threads", blocked, threads)
	assert.LessOrEqual(t, threads, 40)
	cancel()
	wg.Wait()
}

func threadCount(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// TestGoroutinesMPMC: many producers and consumers on several handles, with
// a ring small enough to be full and empty often. Every message arrives
// exactly once, and each consumer sees each producer's messages in order.
func TestGoroutinesMPMC(t *testing.T) {
	producers, consumers, perProducer := 6, 6, 20000
	if testing.Short() {
		perProducer = 3000
	}
	q, p := newTestQueue(t, 8, 16)
	handles := []*Queue{q, openTestQueue(t, p), openTestQueue(t, p)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var pwg sync.WaitGroup
	for id := range producers {
		h := handles[id%len(handles)]
		pwg.Go(func() {
			for seq := range perProducer {
				msg := binary.LittleEndian.AppendUint32(nil, uint32(id))
				msg = binary.LittleEndian.AppendUint64(msg, uint64(seq))
				if err := h.Enqueue(ctx, msg); err != nil {
					t.Errorf("producer %d: %v", id, err)
					return
				}
			}
		})
	}
	received := make([][][]uint64, consumers) // consumer -> producer -> seqs
	var cwg sync.WaitGroup
	for c := range consumers {
		h := handles[(c+1)%len(handles)]
		received[c] = make([][]uint64, producers)
		cwg.Go(func() {
			buf := make([]byte, 16)
			for {
				n, err := h.Dequeue(ctx, buf)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("consumer %d: %v", c, err)
					return
				}
				if n != 12 {
					t.Errorf("consumer %d: %d-byte message", c, n)
					return
				}
				id := binary.LittleEndian.Uint32(buf)
				received[c][id] = append(received[c][id], binary.LittleEndian.Uint64(buf[4:]))
			}
		})
	}
	pwg.Wait()
	require.NoError(t, q.Shutdown())
	cwg.Wait()
	require.NoError(t, ctx.Err())

	seen := make([][]bool, producers)
	for id := range seen {
		seen[id] = make([]bool, perProducer)
	}
	for c := range received {
		for id, seqs := range received[c] {
			for i, seq := range seqs {
				require.Less(t, seq, uint64(perProducer))
				require.False(t, seen[id][seq], "producer %d message %d delivered twice", id, seq)
				seen[id][seq] = true
				if i > 0 {
					require.Greater(t, seq, seqs[i-1], "consumer %d saw producer %d out of order", c, id)
				}
			}
		}
	}
	for id := range seen {
		for seq, ok := range seen[id] {
			require.True(t, ok, "producer %d message %d lost", id, seq)
		}
	}
}

// corruptHeader returns a copy of a valid segment's file contents with f
// applied, written to a new path.
func writeVariant(t *testing.T, valid []byte, f func(b []byte) []byte) string {
	t.Helper()
	b := f(bytes.Clone(valid))
	p := segPath(t)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func TestOpenRefuses(t *testing.T) {
	src, srcPath := newTestQueue(t, 4, 24)
	require.NoError(t, src.TryEnqueue([]byte("x")))
	valid, err := os.ReadFile(srcPath)
	require.NoError(t, err)
	ne := binary.NativeEndian
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { ne.PutUint64(b[off:], v); return b }
	}
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { ne.PutUint32(b[off:], v); return b }
	}
	put16 := func(off int, v uint16) func([]byte) []byte {
		return func(b []byte) []byte { ne.PutUint16(b[off:], v); return b }
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		reason string
	}{
		{"wrong magic", put64(offMagic, 0x1122334455667788), "wrong magic"},
		{"text file", func([]byte) []byte { return bytes.Repeat([]byte("not a queue\n"), 50000) }, "wrong magic"},
		{"truncated below header", func(b []byte) []byte { return b[:100] }, "smaller than"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-64] }, "truncated or extended"},
		{"extended", func(b []byte) []byte { return append(b, make([]byte, 64)...) }, "truncated or extended"},
		{"major version", put16(offVersionMajor, versionMajor+1), "layout version 3.0"},
		{"byte order", put32(offByteOrder, 0x04030201), "byte order"},
		{"other byte order", func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[offMagic:], binary.LittleEndian.Uint64(b[offMagic:]))
			return b
		}, "other byte order"},
		{"word size", put32(offWordSize, 4), "word size 4"},
		{"capacity not power of two", put64(offCapacity, 3), "impossible geometry"},
		{"capacity zero", put64(offCapacity, 0), "impossible geometry"},
		{"capacity huge", put64(offCapacity, 1<<62), "impossible geometry"},
		{"slot size zero", put64(offSlotSize, 0), "impossible geometry"},
		{"slot size huge", put64(offSlotSize, 1<<40), "impossible geometry"},
		{"stride", put64(offSlotStride, 8), "slot stride"},
		{"total size", put64(offTotalSize, 1<<20), "header says"},
		{"header size", put32(offHeaderSize, 64), "header size"},
		{"participants table", put32(offMaxParticipants, 4096), "participants table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeVariant(t, valid, tc.mutate)
			q, err := Open(p)
			require.ErrorIs(t, err, ErrBadSegment)
			assert.Nil(t, q)
			assert.Contains(t, err.Error(), tc.reason)
			assert.Contains(t, err.Error(), p, "the error names the file")
			// Refusing loses nothing: the file is untouched.
			after, rerr := os.ReadFile(p)
			require.NoError(t, rerr)
			assert.Equal(t, tc.mutate(bytes.Clone(valid)), after)
		})
	}
	t.Run("minor version is accepted", func(t *testing.T) {
		p := writeVariant(t, valid, put16(offVersionMinor, versionMinor+3))
		q, err := Open(p)
		require.NoError(t, err)
		defer q.Close()
		buf := make([]byte, 24)
		n, err := q.TryDequeue(buf)
		require.NoError(t, err)
		assert.Equal(t, "x", string(buf[:n]))
	})
}

func TestOpenRefusesNonQueues(t *testing.T) {
	dir := t.TempDir()
	target := segPath(t)
	q, err := Create(target, Config{Capacity: 2, SlotSize: 1})
	require.NoError(t, err)
	require.NoError(t, q.Close())
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(target, link))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))

	short := openInitWait
	openInitWait = 50 * time.Millisecond
	defer func() { openInitWait = short }()

	for _, tc := range []struct {
		name, path, reason string
	}{
		{"directory", dir, "is a directory"},
		{"symlink", link, "symbolic link"},
		{"fifo", fifo, "not a regular file"},
		{"device", "/dev/null", "not a regular file"},
		{"empty file", empty, "empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path)
			require.ErrorIs(t, err, ErrBadSegment)
			assert.Contains(t, err.Error(), tc.reason)
		})
	}
	_, err = Open(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	assert.NotErrorIs(t, err, ErrBadSegment)
}

func TestOpenWaitsForCreator(t *testing.T) {
	// A segment whose ready marker is not yet set, with its creator's lock
	// held, is being created: Open waits for it, then fails clearly if it
	// never becomes ready. Without the creator's lock it was abandoned,
	// and Open says so at once.
	_, srcPath := newTestQueue(t, 4, 8)
	valid, err := os.ReadFile(srcPath)
	require.NoError(t, err)
	p := writeVariant(t, valid, func(b []byte) []byte {
		binary.NativeEndian.PutUint32(b[offReady:], 0)
		return b
	})
	short := openInitWait
	openInitWait = 300 * time.Millisecond
	defer func() { openInitWait = short }()

	start := time.Now()
	_, err = Open(p)
	require.ErrorIs(t, err, ErrBadSegment)
	assert.Contains(t, err.Error(), "abandoned half-built segment")
	assert.Less(t, time.Since(start), 300*time.Millisecond, "no wait for a dead creator")

	creator, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer creator.Close()
	require.NoError(t, lockParticipant(creator, 0))
	start = time.Now()
	_, err = Open(p)
	require.ErrorIs(t, err, ErrBadSegment)
	assert.Contains(t, err.Error(), "never finished initialising")
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)

	// The creator sets the marker while Open waits: Open succeeds.
	go func() {
		time.Sleep(50 * time.Millisecond)
		creator.WriteAt(binary.NativeEndian.AppendUint32(nil, readyMarker), offReady)
	}()
	q, err := Open(p)
	require.NoError(t, err)
	require.NoError(t, q.Close())
}

func TestParticipants(t *testing.T) {
	q, p := newTestQueue(t, 4, 8)
	info, err := Inspect(p)
	require.NoError(t, err)
	require.Len(t, info.Participants, 1)
	assert.Equal(t, os.Getpid(), info.Participants[0].Pid)
	assert.True(t, info.Participants[0].Alive)

	q2 := openTestQueue(t, p)
	info, err = Inspect(p)
	require.NoError(t, err)
	require.Len(t, info.Participants, 2)
	assert.NotEqual(t, q.self, q2.self)
	require.NoError(t, q2.Close())
	info, err = Inspect(p)
	require.NoError(t, err)
	require.Len(t, info.Participants, 1, "Close leaves the table")

}

func TestTooManyParticipants(t *testing.T) {
	q, p := newTestQueue(t, 2, 8)
	_ = q
	var handles []*Queue
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	for len(handles) < maxParticipants-1 {
		h, err := Open(p)
		require.NoError(t, err)
		handles = append(handles, h)
	}
	_, err := Open(p)
	require.ErrorIs(t, err, ErrTooManyParticipants)
	// A handle closing makes room.
	require.NoError(t, handles[10].Close())
	h, err := Open(p)
	require.NoError(t, err)
	handles = append(handles, h)
	assert.Equal(t, handles[10].self, h.self)
}

func TestCorruptLengthIsAnError(t *testing.T) {
	q, _ := newTestQueue(t, 4, 16)
	require.NoError(t, q.TryEnqueue([]byte("hello")))
	require.NoError(t, q.TryEnqueue([]byte("next")))
	q.ring.slot(0).length = 1 << 30 // a peer writes nonsense
	buf := make([]byte, 64)
	_, err := q.TryDequeue(buf)
	require.ErrorIs(t, err, ErrBadSegment)
	// The queue goes on after the bad slot.
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "next", string(buf[:n]))
}

func TestCorruptStateIsAnError(t *testing.T) {
	q, _ := newTestQueue(t, 4, 16)
	q.ring.slot(0).seq.Store(seqWord(1, slotTakeover)) // a takeover at the head
	_, err := q.TryDequeue(make([]byte, 16))
	require.ErrorIs(t, err, ErrBadSegment)
	require.ErrorIs(t, q.TryEnqueue(nil), ErrBadSegment)
	// A sequence far ahead of the positions is refused too, not chased.
	q.ring.slot(0).seq.Store(seqWord(1000, 0)) // the tail's slot
	require.ErrorIs(t, q.TryEnqueue(nil), ErrBadSegment)
	q.ring.slot(1).seq.Store(seqWord(1000, 0)) // the head's slot
	_, err = q.TryDequeue(make([]byte, 16))
	require.ErrorIs(t, err, ErrBadSegment)
}

// tryDequeueString takes the message at the head, which must be there
// now, as a string.
func tryDequeueString(t *testing.T, q *Queue) string {
	t.Helper()
	buf := make([]byte, q.SlotSize())
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

func dequeueString(t *testing.T, q *Queue) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	buf := make([]byte, q.SlotSize())
	n, err := q.Dequeue(ctx, buf)
	require.NoError(t, err)
	return string(buf[:n])
}
