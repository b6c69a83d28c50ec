package bridge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shmq/mpmc"
)

// SeqHeaderLen is the length of the header In puts before each local
// message with InConfig.SeqHeader: the message's stream sequence, a
// big-endian uint64.
const SeqHeaderLen = 8

// InConfig configures In.
type InConfig struct {
	// Queue is the path of the local queue segment to enqueue to.
	Queue string
	// Stream is the JetStream stream to read, through the durable pull
	// consumer Durable (created if it does not exist, its configuration
	// updated otherwise). FilterSubject, if set, restricts it to a
	// subject.
	Stream, Durable, FilterSubject string
	// Batch is the most messages enqueued with one EnqueueBatch (default
	// 256); the consumer buffers up to 2*Batch.
	Batch int
	// MaxAckPending bounds the messages delivered to this consumer and not
	// acknowledged yet (default 4*Batch).
	MaxAckPending int
	// AckWait is how long JetStream waits for an acknowledgement before it
	// delivers a message again (default 30s). While the local queue is full
	// In tells JetStream the messages it holds are in progress.
	AckWait time.Duration
	// SeqHeader prefixes each local message with its stream sequence
	// (SeqHeaderLen bytes), by which consumers can drop the duplicates of
	// a message In delivered twice.
	SeqHeader bool
	// Logf, if set, receives the bridge's log lines.
	Logf func(format string, args ...any)
}

// InCounters are In's counters, updated as it runs.
type InCounters struct {
	// Forwarded counts messages enqueued to the local queue and
	// acknowledged to JetStream.
	Forwarded atomic.Uint64
	// Redelivered counts messages JetStream had delivered before
	// (NumDelivered > 1): to a bridge that stopped before acknowledging
	// them. Some of those may have been enqueued already.
	Redelivered atomic.Uint64
	// TooLarge counts messages longer than the queue's slot size: they are
	// terminated in JetStream (never delivered again, but still in the
	// stream) and logged with their stream sequence.
	TooLarge atomic.Uint64

	mu       sync.Mutex
	largeSeq []uint64
}

// TooLargeSeqs returns the stream sequences of the messages counted in
// TooLarge.
func (c *InCounters) TooLargeSeqs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.largeSeq...)
}

// In reads the stream through a durable consumer and enqueues every message
// to the queue at cfg.Queue, acknowledging each after its Enqueue returned,
// until ctx is done or the queue is shut down (both return nil; messages
// not enqueued are left to JetStream, negatively acknowledged so that they
// are delivered again at once). It returns ErrNoStream, ErrInvalidConfig,
// or an error of mpmc.Open or of JetStream.
func In(ctx context.Context, nc *nats.Conn, cfg InConfig, c *InCounters) error {
	log := logf(cfg.Logf)
	if cfg.Batch == 0 {
		cfg.Batch = 256
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = 4 * cfg.Batch
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Batch < 1 || cfg.MaxAckPending < cfg.Batch || cfg.Stream == "" || cfg.Durable == "" {
		return fmt.Errorf("%w: batch %d, max ack pending %d, stream %q, durable %q", ErrInvalidConfig, cfg.Batch, cfg.MaxAckPending, cfg.Stream, cfg.Durable)
	}
	if c == nil {
		c = new(InCounters)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := checkStream(ctx, js, cfg.Stream, ""); err != nil {
		return err
	}
	q, err := mpmc.Open(cfg.Queue)
	if err != nil {
		return err
	}
	defer q.Close()
	hdr := 0
	if cfg.SeqHeader {
		hdr = SeqHeaderLen
	}
	if q.SlotSize() <= hdr {
		return fmt.Errorf("%w: slot size %d leaves no room after the sequence header", ErrInvalidConfig, q.SlotSize())
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		FilterSubject: cfg.FilterSubject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("bridge: consumer %q of stream %q: %w", cfg.Durable, cfg.Stream, err)
	}
	// Shutdown of the queue stops In even while it waits for messages.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if q.Stats().Shutdown {
					log("queue %s is shut down", cfg.Queue)
					cancel()
					return
				}
			}
		}
	}()
	r := &inRun{cfg: cfg, q: q, c: c, log: log, hdr: hdr}
	bo := newBackoff()
	for ctx.Err() == nil {
		it, err := cons.Messages(jetstream.PullMaxMessages(2*cfg.Batch), jetstream.PullHeartbeat(time.Second))
		if err != nil {
			log("pull from consumer %q: %v", cfg.Durable, err)
			bo.wait(ctx.Done())
			continue
		}
		err = r.loop(ctx, it)
		it.Stop()
		var qe queueError
		if errors.As(err, &qe) {
			if errors.Is(qe.err, mpmc.ErrClosed) {
				log("queue %s is shut down", cfg.Queue)
				break
			}
			return qe.err
		}
		if err != nil && ctx.Err() == nil {
			log("pull from consumer %q: %v", cfg.Durable, err)
			bo.wait(ctx.Done())
			continue
		}
		bo.reset()
	}
	// The acknowledgements are sent without waiting for replies: get them
	// to the server before the connection goes.
	if !nc.IsConnected() {
		log("not connected: the last acknowledgements may be lost (JetStream then delivers those messages again)")
	} else if err := nc.FlushTimeout(5 * time.Second); err != nil {
		log("flush of acknowledgements: %v (JetStream may deliver those messages again)", err)
	}
	return nil
}

type inRun struct {
	cfg  InConfig
	q    *mpmc.Queue
	c    *InCounters
	log  func(string, ...any)
	hdr  int
	msgs []jetstream.Msg
	bufs [][]byte
}

// loop batches messages from it into the queue until ctx is done, the queue
// is shut down (mpmc.ErrClosed) or the iterator fails.
func (r *inRun) loop(ctx context.Context, it jetstream.MessagesContext) error {
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		r.add(m)
		// Whatever else is already here, up to a batch.
		for len(r.msgs) < r.cfg.Batch {
			m, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			r.add(m)
		}
		if err := r.flush(ctx); err != nil {
			return err
		}
	}
}

// add appends m to the batch, or terminates it if it cannot fit a slot.
func (r *inRun) add(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		r.log("message without metadata: %v; terminated", err)
		_ = m.Term()
		return
	}
	if meta.NumDelivered > 1 {
		r.c.Redelivered.Add(1)
	}
	data := m.Data()
	if r.hdr+len(data) > r.q.SlotSize() {
		r.c.TooLarge.Add(1)
		r.c.mu.Lock()
		r.c.largeSeq = append(r.c.largeSeq, meta.Sequence.Stream)
		r.c.mu.Unlock()
		r.log("%v: stream %s sequence %d is %d bytes, slot size %d: terminated, left in the stream", ErrTooLarge, r.cfg.Stream, meta.Sequence.Stream, r.hdr+len(data), r.q.SlotSize())
		_ = m.TermWithReason("larger than the mpmc queue's slot size")
		return
	}
	b := data
	if r.hdr > 0 {
		b = binary.BigEndian.AppendUint64(make([]byte, 0, r.hdr+len(data)), meta.Sequence.Stream)
		b = append(b, data...)
	}
	r.msgs = append(r.msgs, m)
	r.bufs = append(r.bufs, b)
}

// flush enqueues the batch, acknowledging each message once it is in. While
// the queue is full, it tells JetStream the messages are in progress every
// third of AckWait. On an error it leaves the rest to JetStream.
func (r *inRun) flush(ctx context.Context) error {
	defer func() {
		clear(r.msgs)
		clear(r.bufs)
		r.msgs, r.bufs = r.msgs[:0], r.bufs[:0]
	}()
	done := 0
	for done < len(r.bufs) {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.AckWait/3)
		n, err := r.q.EnqueueBatch(wctx, r.bufs[done:])
		cancel()
		for _, m := range r.msgs[done : done+n] {
			_ = m.Ack()
		}
		r.c.Forwarded.Add(uint64(n))
		done += n
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			for _, m := range r.msgs[done:] {
				_ = m.InProgress()
			}
		default:
			for _, m := range r.msgs[done:] {
				_ = m.Nak()
			}
			if ctx.Err() != nil {
				return nil
			}
			return queueError{err}
		}
	}
	return nil
}

// queueError is an error of the local queue, as opposed to one of
// JetStream.
type queueError struct{ err error }

func (e queueError) Error() string { return e.err.Error() }
