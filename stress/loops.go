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

// count counts one message sent or received at now, and calls hook.
func (st *loopStats) count(now int64, hook func(uint64)) {
	if st.FirstNs == 0 {
		st.FirstNs = now
	}
	st.LastNs = now
	st.Messages++
	if hook != nil {
		hook(st.Messages)
	}
}

// loopConfig is what the producer and the consumer loops share.
type loopConfig struct {
	Clock *monoClock
	// Size is the message size: what a producer sends, what a consumer
	// expects (0: any length).
	Size int
	Seed uint64 // seed of the payloads
	// Hook, if not nil, is called with the count after each message.
	Hook func(uint64)
}

// producerConfig says what a producer loop sends.
type producerConfig struct {
	loopConfig
	ID       uint32    // producer id written in each message
	Count    uint64    // messages to send, 0: no limit
	Deadline time.Time // when to stop, zero: none
}

// consumerConfig says how a consumer loop checks and records.
type consumerConfig struct {
	loopConfig
	Limit uint64 // messages to take, 0: no limit
	// Hist receives each intact message's latency.
	Hist *hdrhistogram.Histogram
	// Sink receives each message's record.
	Sink func(verify.Record) error
}

// producerLoop is one producer: messages 0, 1, 2... of producer cfg.ID,
// each stamped with its send time just before Enqueue. It stops after
// cfg.Count messages, at cfg.Deadline, when ctx is cancelled, or when the
// queue is shut down. Any other error from the queue is returned: it means
// the queue misbehaved.
func producerLoop(ctx context.Context, q *mpmc.Queue, cfg producerConfig) (loopStats, error) {
	var st loopStats
	msg := make([]byte, cfg.Size)
	for seq := uint64(0); ; seq++ {
		if cfg.Count != 0 && seq >= cfg.Count {
			st.Stop = stopCount
			return st, nil
		}
		if seq%64 == 0 {
			if !cfg.Deadline.IsZero() && !time.Now().Before(cfg.Deadline) {
				st.Stop = stopDuration
				return st, nil
			}
			if ctx.Err() != nil {
				st.Stop = stopSignal
				return st, nil
			}
		}
		now := cfg.Clock.Now()
		message.Encode(msg, cfg.Seed, message.Header{Producer: cfg.ID, Seq: seq, Sent: now})
		if err := q.Enqueue(ctx, msg); err != nil {
			switch {
			case errors.Is(err, mpmc.ErrClosed):
				st.Stop = stopShutdown
				return st, nil
			case ctx.Err() != nil && errors.Is(err, ctx.Err()):
				st.Stop = stopSignal
				return st, nil
			}
			return st, fmt.Errorf("enqueue of producer %d seq %d: %w", cfg.ID, seq, err)
		}
		st.count(now, cfg.Hook)
	}
}

// consumerLoop dequeues until the queue is shut down and drained,
// cfg.Limit messages were taken, ctx is done (a deadline of ctx counts as
// the -duration ending) or the queue misbehaves. Each message is checked
// (length when cfg.Size > 0, checksum, payload), its latency recorded in
// cfg.Hist, and its record passed to cfg.Sink.
func consumerLoop(ctx context.Context, q *mpmc.Queue, cfg consumerConfig) (loopStats, error) {
	var st loopStats
	buf := make([]byte, max(q.SlotSize(), cfg.Size))
	for cfg.Limit == 0 || st.Messages < cfg.Limit {
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
		now := cfg.Clock.Now()
		h, derr := message.Decode(buf[:n], cfg.Seed)
		if derr == nil && cfg.Size > 0 && n != cfg.Size {
			derr = fmt.Errorf("producer %d seq %d: %d bytes, expected %d", h.Producer, h.Seq, n, cfg.Size)
		}
		rec := verify.Record{Producer: h.Producer, Seq: h.Seq, At: now}
		if derr != nil || h.Producer > verify.MaxProducer {
			rec.Corrupt = true
			st.Corrupt++
			if len(st.CorruptSamples) < 5 {
				st.CorruptSamples = append(st.CorruptSamples, fmt.Sprintf("message %d: %v", st.Messages, derr))
			}
		} else {
			cfg.Hist.RecordValue(min(max(now-h.Sent, latencyMin), latencyMax))
		}
		if err := cfg.Sink(rec); err != nil {
			return st, fmt.Errorf("writing record: %w", err)
		}
		st.count(now, cfg.Hook)
	}
	st.Stop = stopCount
	return st, nil
}
