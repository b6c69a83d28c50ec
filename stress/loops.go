package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/message"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// Why a producer or consumer loop ended.
const (
	stopCount    = "count"    // it sent or received the messages it was asked for
	stopDuration = "duration" // its -duration elapsed
	stopShutdown = "shutdown" // the queue was shut down (and, for a consumer, drained)
	stopSignal   = "signal"   // it was told to stop (SIGINT or SIGTERM)
)

// Latency histograms record nanoseconds from 1 ns to a minute, with three
// significant digits.
const (
	latencyMin    = 1
	latencyMax    = int64(time.Minute)
	latencyDigits = 3
)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(latencyMin, latencyMax, latencyDigits)
}

// loopStats is what a producer or consumer loop did.
type loopStats struct {
	Messages uint64 // messages enqueued, or dequeued (corrupt ones included)
	Corrupt  uint64 // messages that failed their checks (consumers)
	FirstNs  int64  // CLOCK_MONOTONIC of the first message, 0 if none
	LastNs   int64  // CLOCK_MONOTONIC of the last message, 0 if none
	Stop     string // why the loop ended: one of the stop constants
	// CorruptSamples describes the first corrupt messages.
	CorruptSamples []string
}

// producerLoop is one producer: messages 0, 1, 2... of producer id, each
// stamped with its send time just before Enqueue. It stops after count
// messages (0 = no limit), at deadline (zero = none), when ctx is cancelled,
// or when the queue is shut down. Any other error from the queue is
// returned: it means the queue misbehaved.
func producerLoop(ctx context.Context, q *mpmc.Queue, clk *monoClock, id uint32, count uint64, deadline time.Time, size int, seed uint64, hook func(uint64)) (loopStats, error) {
	var st loopStats
	msg := make([]byte, size)
	for seq := uint64(0); ; seq++ {
		if count != 0 && seq >= count {
			st.Stop = stopCount
			return st, nil
		}
		if seq%64 == 0 {
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				st.Stop = stopDuration
				return st, nil
			}
			if ctx.Err() != nil {
				st.Stop = stopSignal
				return st, nil
			}
		}
		now := clk.Now()
		message.Encode(msg, seed, message.Header{Producer: id, Seq: seq, Sent: now})
		if err := q.Enqueue(ctx, msg); err != nil {
			switch {
			case errors.Is(err, mpmc.ErrClosed):
				st.Stop = stopShutdown
				return st, nil
			case ctx.Err() != nil && errors.Is(err, ctx.Err()):
				st.Stop = stopSignal
				return st, nil
			}
			return st, fmt.Errorf("enqueue of producer %d seq %d: %w", id, seq, err)
		}
		if st.FirstNs == 0 {
			st.FirstNs = now
		}
		st.LastNs = now
		st.Messages++
		if hook != nil {
			hook(st.Messages)
		}
	}
}

// consumerLoop dequeues until the queue is shut down and drained, limit
// messages were taken (0 = no limit), ctx is done (a deadline of ctx counts
// as the -duration ending) or the queue misbehaves. Each message is checked
// (length when size > 0, checksum, payload), its latency recorded in hist,
// and its record passed to sink.
func consumerLoop(ctx context.Context, q *mpmc.Queue, clk *monoClock, limit uint64, size int, seed uint64, hist *hdrhistogram.Histogram, sink func(verify.Record) error, hook func(uint64)) (loopStats, error) {
	var st loopStats
	buf := make([]byte, max(q.SlotSize(), size))
	for limit == 0 || st.Messages < limit {
		n, err := q.Dequeue(ctx, buf)
		if err != nil {
			switch {
			case errors.Is(err, mpmc.ErrClosed):
				st.Stop = stopShutdown
			case errors.Is(err, context.DeadlineExceeded):
				st.Stop = stopDuration
			case errors.Is(err, context.Canceled):
				st.Stop = stopSignal
			default:
				return st, fmt.Errorf("dequeue after %d messages: %w", st.Messages, err)
			}
			return st, nil
		}
		now := clk.Now()
		h, derr := message.Decode(buf[:n], seed)
		if derr == nil && size > 0 && n != size {
			derr = fmt.Errorf("producer %d seq %d: %d bytes, expected %d", h.Producer, h.Seq, n, size)
		}
		rec := verify.Record{Producer: h.Producer, Seq: h.Seq, At: now}
		if derr != nil || h.Producer > verify.MaxProducer {
			rec.Corrupt = true
			st.Corrupt++
			if len(st.CorruptSamples) < 5 {
				st.CorruptSamples = append(st.CorruptSamples, fmt.Sprintf("message %d: %v", st.Messages, derr))
			}
		} else {
			hist.RecordValue(min(max(now-h.Sent, latencyMin), latencyMax))
		}
		if err := sink(rec); err != nil {
			return st, fmt.Errorf("writing record: %w", err)
		}
		if st.FirstNs == 0 {
			st.FirstNs = now
		}
		st.LastNs = now
		st.Messages++
		if hook != nil {
			hook(st.Messages)
		}
	}
	st.Stop = stopCount
	return st, nil
}
