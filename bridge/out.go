package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shmq/mpmc"
)

// holdsPerHandle is the most zero-copy holds one mpmc handle may have.
const holdsPerHandle = 16

// OutConfig configures Out.
type OutConfig struct {
	// Queue is the path of the local queue segment to consume.
	Queue string
	// Subject is the JetStream subject to publish to; Stream is the stream
	// that must take it (checked at start, and expected by every publish).
	Subject, Stream string
	// Window is how many publishes may await their acknowledgement at
	// once (default 64). Each is a message held in place in the queue
	// (mpmc.Taken); a handle holds at most 16, so Out opens
	// ceil(Window/16) handles.
	Window int
	// AckTimeout bounds the wait for one publish's acknowledgement before
	// it is re-sent (default 5s).
	AckTimeout time.Duration
	// DrainTimeout bounds how long Out waits, once stopped, for the
	// acknowledgements of the publishes in flight (default 10s).
	DrainTimeout time.Duration
	// IDPrefix is put before every message ID (see MsgID).
	IDPrefix string
	// AllowLoss lets Out run on a queue created without
	// mpmc.Config.Redeliver, where the messages a killed bridge held are
	// lost (a warning is logged).
	AllowLoss bool
	// Logf, if set, receives the bridge's log lines.
	Logf func(format string, args ...any)
}

// OutCounters are Out's counters, updated as it runs (read them from any
// goroutine).
type OutCounters struct {
	// Forwarded counts messages acknowledged by JetStream and released
	// from the queue, duplicates included.
	Forwarded atomic.Uint64
	// Resent counts publishes made again after a failure or a timeout.
	Resent atomic.Uint64
	// Duplicates counts acknowledgements with PubAck.Duplicate: JetStream
	// had the message ID already (a re-send, or a message a killed bridge
	// had published) and did not store it again.
	Duplicates atomic.Uint64
	// Redelivered counts messages the queue redelivered to this bridge
	// after a bridge died holding them (mpmc.Taken.Redelivered).
	Redelivered atomic.Uint64
	// QueueDropped is how many recovered messages queue A dropped while
	// this bridge ran (its Stats: RecoveredReads - Redelivered, since the
	// start): messages a dead consumer held that could not be redelivered.
	QueueDropped atomic.Uint64
}

// pub is one message in the window: held in the queue until acknowledged.
type pub struct {
	t   mpmc.Taken
	h   int // index of the handle holding t
	msg *nats.Msg
	fut jetstream.PubAckFuture // nil: to be (re)sent
	n   int                    // sends so far
	// again: the queue redelivered it (mpmc.Taken.Redelivered)
	again bool
}

// Out consumes the queue at cfg.Queue and publishes every message to
// cfg.Subject until ctx is done (it then waits for the publishes in flight,
// up to cfg.DrainTimeout) or the queue is shut down and drained; both
// return nil. It returns ErrNoRedeliver, ErrNoStream, ErrInvalidConfig, an
// error of mpmc.Open, or ErrDrainTimeout.
func Out(ctx context.Context, nc *nats.Conn, cfg OutConfig, c *OutCounters) error {
	log := logf(cfg.Logf)
	if cfg.Window == 0 {
		cfg.Window = 64
	}
	if cfg.Window < 1 || cfg.Subject == "" || cfg.Stream == "" {
		return fmt.Errorf("%w: window %d, subject %q, stream %q", ErrInvalidConfig, cfg.Window, cfg.Subject, cfg.Stream)
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if c == nil {
		c = new(OutCounters)
	}
	info, err := mpmc.Inspect(cfg.Queue)
	if err != nil {
		return err
	}
	redeliver, err := Redelivers(cfg.Queue)
	if err != nil {
		return err
	}
	if !redeliver {
		if !cfg.AllowLoss {
			return fmt.Errorf("%w: %s (create it with Redeliver, or allow loss)", ErrNoRedeliver, cfg.Queue)
		}
		log("warning: %s was created without Config.Redeliver: messages held by a killed bridge are lost", cfg.Queue)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.Window),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return err
	}
	if err := checkStream(ctx, js, cfg.Stream, cfg.Subject); err != nil {
		return err
	}

	// Opening the queue recovers what a dead bridge held (redelivered at
	// the tail); what recovery drops shows in the counters.
	lost0 := info.Stats.RecoveredReads - info.Stats.Redelivered
	qs := make([]*mpmc.Queue, (cfg.Window+holdsPerHandle-1)/holdsPerHandle)
	for i := range qs {
		if qs[i], err = mpmc.Open(cfg.Queue); err != nil {
			for _, q := range qs[:i] {
				q.Close()
			}
			return err
		}
	}
	dropped := func() {
		s := qs[0].Stats()
		if d := s.RecoveredReads - s.Redelivered - lost0; d > c.QueueDropped.Load() {
			log("warning: queue %s dropped %d recovered messages (Stats.RecoveredReads - Stats.Redelivered)", cfg.Queue, d)
			c.QueueDropped.Store(d)
		}
	}
	dropped()

	o := &outRun{cfg: cfg, js: js, qs: qs, held: make([]int, len(qs)), c: c, log: log, bo: newBackoff(), created: info.Created}
	err = o.run(ctx)
	dropped()
	if err != nil {
		return err // holds are left: this process must exit for their recovery
	}
	for _, q := range qs {
		q.Close()
	}
	return nil
}

type outRun struct {
	cfg     OutConfig
	js      jetstream.JetStream
	qs      []*mpmc.Queue
	held    []int // holds per handle
	c       *OutCounters
	log     func(string, ...any)
	bo      backoff
	created time.Time
	win     []*pub
	again   int // redelivered messages in win
}

// handle returns a handle with a hold to spare.
func (o *outRun) handle() int {
	best := 0
	for i, n := range o.held {
		if n < o.held[best] {
			best = i
		}
	}
	return best
}

func (o *outRun) run(ctx context.Context) error {
	var (
		closed   bool             // the queue is shut down and drained
		stopping bool             // ctx is done: no more takes
		drain    <-chan time.Time // when stopping: the end of the drain
		done     = ctx.Done()
	)
	stop := func() {
		stopping, done = true, nil
		drain = time.After(o.cfg.DrainTimeout)
	}
	for {
		// Fill the window with what is there now.
		// A message the queue redelivered is never redelivered again: while
		// one is in flight, take no more, so that a bridge killed then (say,
		// during an outage) has at most one such message dropped by the
		// queue's recovery rather than a window of them.
		for !stopping && !closed && len(o.win) < o.cfg.Window && o.again == 0 {
			h := o.handle()
			t, err := o.qs[h].TryTake()
			if errors.Is(err, mpmc.ErrEmpty) {
				break
			}
			if errors.Is(err, mpmc.ErrClosed) {
				closed = true
				break
			}
			if err != nil {
				return err
			}
			o.add(h, t)
		}
		if len(o.win) == 0 {
			if stopping || closed {
				return nil
			}
			h := o.handle()
			t, err := o.qs[h].Take(ctx)
			switch {
			case errors.Is(err, mpmc.ErrClosed):
				return nil
			case ctx.Err() != nil:
				return nil
			case err != nil:
				return err
			}
			o.add(h, t)
			continue
		}
		// Wait for the oldest publish.
		p := o.win[0]
		if p.fut == nil {
			if p.n > 0 {
				wake := done
				if stopping {
					wake = nil
				}
				o.bo.wait(wake)
			}
			o.send(p)
			continue
		}
		select {
		case ack := <-p.fut.Ok():
			if err := o.acked(ack); err != nil {
				return err
			}
			// Release every publish already acknowledged in a row, so
			// that the window refills (and the publishes go out) in a
			// burst, and sleeping producers are woken once for many slots.
		more:
			for len(o.win) > 0 && o.win[0].fut != nil {
				select {
				case ack := <-o.win[0].fut.Ok():
					if err := o.acked(ack); err != nil {
						return err
					}
				default:
					break more
				}
			}
		case err := <-p.fut.Err():
			o.log("publish of %s failed (attempt %d): %v", p.msg.Header.Get(jetstream.MsgIDHeader), p.n, err)
			p.fut = nil
		case <-done:
			stop()
		case <-drain:
			return fmt.Errorf("%w: %d publishes in flight after %v", ErrDrainTimeout, len(o.win), o.cfg.DrainTimeout)
		}
	}
}

// acked releases the oldest publish, acknowledged with ack.
func (o *outRun) acked(ack *jetstream.PubAck) error {
	p := o.win[0]
	if ack.Duplicate {
		o.c.Duplicates.Add(1)
	}
	if err := p.t.Release(); err != nil {
		return fmt.Errorf("bridge: release after ack: %w", err)
	}
	o.held[p.h]--
	if p.again {
		o.again--
	}
	o.win[0] = nil
	o.win = o.win[1:]
	o.c.Forwarded.Add(1)
	o.bo.reset()
	return nil
}

// add copies a taken message into a publish and sends it.
func (o *outRun) add(h int, t mpmc.Taken) {
	o.held[h]++
	if t.Redelivered() {
		o.c.Redelivered.Add(1)
		o.again++
	}
	b := t.Bytes()
	m := &nats.Msg{
		Subject: o.cfg.Subject,
		Data:    append(make([]byte, 0, len(b)), b...),
		Header:  nats.Header{},
	}
	m.Header.Set(jetstream.MsgIDHeader, MsgID(o.cfg.IDPrefix, o.created, t.ID()))
	m.Header.Set(jetstream.ExpectedStreamHeader, o.cfg.Stream)
	p := &pub{t: t, h: h, msg: m, again: t.Redelivered()}
	o.win = append(o.win, p)
	o.send(p)
}

// send publishes p asynchronously; a publish that fails at once leaves
// p.fut nil, to be retried when it is the oldest.
func (o *outRun) send(p *pub) {
	if p.n > 0 {
		o.c.Resent.Add(1)
	}
	p.n++
	// The headers carry the ID and the expected stream; a copy of the
	// message, since the library keeps the one it is given for its own
	// retries.
	m := &nats.Msg{Subject: p.msg.Subject, Data: p.msg.Data, Header: p.msg.Header}
	f, err := o.js.PublishMsgAsync(m, jetstream.WithStallWait(o.cfg.AckTimeout))
	if err != nil {
		if p.n == 1 || p.n%100 == 0 {
			o.log("publish of %s failed at once (attempt %d): %v", p.msg.Header.Get(jetstream.MsgIDHeader), p.n, err)
		}
		return
	}
	p.fut = f
}
