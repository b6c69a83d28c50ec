//go:build mpmc_hooks

package mpmc

// A sleeper held up by a claim whose owner dies notices within the recovery
// timeout plus stallSliceMax, whatever it was waiting for when it fell
// asleep: here it falls asleep on an ordinary full (or empty) queue, and
// only then does a peer claim the slot in its way and die holding it.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sleepNoticeBound is what the tests assert: far more than the recovery
// timeout (20 ms) plus stallSliceMax (100 ms), to absorb a noisy machine,
// and far less than the 2 s idle slice a sleeper would otherwise sleep.
const sleepNoticeBound = time.Second

func TestSleepingProducerNoticesDeadConsumer(t *testing.T) {
	q, p := newTestQueue(t, 2, 32)
	q.SetSpin(0)
	q.SetRecoveryTimeout(20 * time.Millisecond)
	require.NoError(t, q.TryEnqueue([]byte("m0")))
	require.NoError(t, q.TryEnqueue([]byte("m1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan time.Time, 1)
	go func() {
		assert.NoError(t, q.Enqueue(ctx, []byte("m2")))
		done <- time.Now()
	}()
	waitFor(t, func() bool { return q.Stats().ProducerSleeps > 0 })
	time.Sleep(20 * time.Millisecond) // asleep on a full queue, nothing claimed
	// A consumer takes m0, the slot the producer waits for, and dies.
	crashChild(t, "crash-dequeue", p, hookDequeueTaken)
	died := time.Now()
	select {
	case at := <-done:
		t.Logf("producer went on %v after the consumer died", at.Sub(died))
		assert.Less(t, at.Sub(died), sleepNoticeBound)
	case <-time.After(10 * time.Second):
		t.Fatal("the producer never noticed the dead consumer")
	}
	st := q.Stats()
	assert.Equal(t, uint64(1), st.RecoveredReads)
	buf := make([]byte, 32)
	for _, want := range []string{"m1", "m2"} {
		n, err := q.TryDequeue(buf)
		require.NoError(t, err)
		assert.Equal(t, want, string(buf[:n]))
	}
}

func TestSleepingConsumerNoticesDeadProducer(t *testing.T) {
	q, p := newTestQueue(t, 4, 32)
	q.SetSpin(0)
	q.SetRecoveryTimeout(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 32)
		n, err := q.Dequeue(ctx, buf)
		assert.NoError(t, err)
		got <- string(buf[:n])
	}()
	waitFor(t, func() bool { return q.Stats().ConsumerSleeps > 0 })
	time.Sleep(20 * time.Millisecond) // asleep on an empty queue, nothing claimed
	// A producer claims the head position and dies before publishing.
	crashChild(t, "crash-enqueue", p, hookEnqueueClaimed)
	died := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for q.Stats().RecoveredWrites == 0 {
		require.True(t, time.Now().Before(deadline), "the consumer never noticed the dead producer")
		time.Sleep(time.Millisecond)
	}
	t.Logf("consumer recovered the claim %v after the producer died", time.Since(died))
	assert.Less(t, time.Since(died), sleepNoticeBound)
	// Still asleep, and woken by the next message.
	select {
	case m := <-got:
		t.Fatalf("Dequeue returned %q with nothing published", m)
	default:
	}
	require.NoError(t, q.TryEnqueue([]byte("after")))
	m := recvWithin(t, got, 10*time.Second, "the consumer did not wake for the next message")
	assert.Equal(t, "after", m)
}
