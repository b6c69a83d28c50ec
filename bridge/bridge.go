// Package bridge moves messages between local mpmc queues and NATS
// JetStream, for programs that outgrow one host.
//
// Out takes messages from a local queue and publishes each to a JetStream
// subject, with a message ID made of the segment's identity (its creation
// time) and the message's identity in it (mpmc.Taken.ID). A message's slot
// is released only after JetStream acknowledged the publish, so a bridge
// killed in between loses nothing: the queue (created with
// mpmc.Config.Redeliver) hands the message to the next bridge with the
// same ID, and JetStream's duplicate window drops the re-send.
//
// In reads a durable JetStream pull consumer and enqueues its messages to a
// local queue, acknowledging each to JetStream only after Enqueue returned.
// A bridge killed between the two makes JetStream deliver the message again:
// the in side is at-least-once; with InConfig.SeqHeader each local message
// starts with its stream sequence, by which consumers can drop those
// duplicates.
//
// Guarantees, end to end (queue A, Out, a stream, In, queue B):
//
//   - Every message whose Enqueue on A returned nil reaches B at least once,
//     unless queue A itself drops it in recovery (see mpmc.Config.Redeliver:
//     a message is redelivered once, and only if room is found within 10ms;
//     such drops show in A's Stats as RecoveredReads - Redelivered and are
//     reported by Out). Out holds at most one message that was redelivered
//     before; shut A down only while an Out runs on it, since recovery
//     after Shutdown drops what a killed bridge held.
//   - The stream holds each message once: re-sends by Out carry the same
//     message ID and are dropped by JetStream within the stream's duplicate
//     window (Duplicates in the PubAck, counted). A re-send after the window
//     (a bridge down for longer than it) is stored twice.
//   - B receives a stream message more than once only when In stopped
//     between Enqueue and Ack (a kill, a lost connection, an expired
//     AckWait): same stream sequence, counted by JetStream's NumDelivered.
//   - Order: without failures, the messages of one producer on A reach one
//     consumer on B in order (one Out and one In bridge). A failed publish
//     is re-sent after those that followed it, and a redelivered message
//     comes out of order, as in the queue itself.
package bridge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors of the bridge. Each is a sentinel, wrapped with details: test with
// errors.Is.
var (
	// ErrNoRedeliver is returned by Out for a queue created without
	// mpmc.Config.Redeliver (unless OutConfig.AllowLoss): a bridge killed
	// while holding messages of such a queue would lose them.
	ErrNoRedeliver = errors.New("bridge: queue was created without Config.Redeliver")
	// ErrUnreachable is returned by Dial when no NATS server answered
	// within the timeout.
	ErrUnreachable = errors.New("bridge: NATS server unreachable")
	// ErrNoStream is returned when the JetStream stream does not exist, or
	// the subject is not bound to it.
	ErrNoStream = errors.New("bridge: stream not found")
	// ErrInvalidConfig is returned for a configuration the bridge cannot
	// run with.
	ErrInvalidConfig = errors.New("bridge: invalid config")
	// ErrDrainTimeout is returned by Out when it was stopped and some
	// publishes were still not acknowledged after OutConfig.DrainTimeout.
	// Their messages are still held: the queue redelivers them when this
	// process exits and the next participant opens the queue.
	ErrDrainTimeout = errors.New("bridge: publishes not acknowledged in time")
	// ErrTooLarge is reported (in InCounters.TooLarge and by the log) for
	// a stream message longer than the local queue's slot size.
	ErrTooLarge = errors.New("bridge: message larger than the queue's slot size")
)

// Dial connects to the NATS server at url, waiting at most timeout for the
// first connection (ErrUnreachable after that). The connection then
// reconnects forever, and never buffers publishes while disconnected (so
// that a publish fails at once and its message stays in the local queue).
func Dial(ctx context.Context, url string, timeout time.Duration, name string) (*nats.Conn, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	var last error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		nc, err := nats.Connect(url,
			nats.Name(name),
			nats.Timeout(min(2*time.Second, timeout)),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(100*time.Millisecond),
			nats.ReconnectBufSize(-1),
			nats.NoCallbacksAfterClientClose(),
		)
		if err == nil {
			return nc, nil
		}
		last = err
		if time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("%w: %s after %v: %v", ErrUnreachable, url, timeout, last)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: %v (%v)", ErrUnreachable, url, last, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// Redelivers reports whether the queue segment at path was created with
// mpmc.Config.Redeliver, reading the header's flags word (LAYOUT.md: offset
// 0x060, bit 0). Call it after mpmc.Inspect validated the segment.
func Redelivers(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], 0x060); err != nil {
		return false, fmt.Errorf("bridge: read flags of %s: %w", path, err)
	}
	return binary.NativeEndian.Uint32(b[:])&1 != 0, nil
}

// MsgID is the JetStream message ID of the message with identity id
// (mpmc.Taken.ID) in the segment created at created (mpmc.Info.Created):
// the same for every re-send of the message, different for every other
// message of every segment (prefix tells hosts apart, if their segments may
// have been created in the same nanosecond).
func MsgID(prefix string, created time.Time, id uint64) string {
	return fmt.Sprintf("%smpmc-%d-%d", prefix, created.UnixNano(), id)
}

// checkStream returns ErrNoStream unless the stream exists and takes
// subject (if subject is not empty).
func checkStream(ctx context.Context, js jetstream.JetStream, stream, subject string) error {
	if _, err := js.Stream(ctx, stream); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: %q", ErrNoStream, stream)
		}
		return fmt.Errorf("bridge: stream %q: %w", stream, err)
	}
	if subject == "" {
		return nil
	}
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: no stream takes subject %q (expected %q)", ErrNoStream, subject, stream)
		}
		return fmt.Errorf("bridge: stream of subject %q: %w", subject, err)
	}
	if name != stream {
		return fmt.Errorf("%w: subject %q is bound to stream %q, not %q", ErrNoStream, subject, name, stream)
	}
	return nil
}

// backoff is an exponential delay between retries.
type backoff struct{ next, base, max time.Duration }

func newBackoff() backoff {
	return backoff{next: 20 * time.Millisecond, base: 20 * time.Millisecond, max: 2 * time.Second}
}

// wait sleeps for the next delay (or until done closes) and doubles it.
func (b *backoff) wait(done <-chan struct{}) {
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
	b.next = min(2*b.next, b.max)
}

func (b *backoff) reset() { b.next = b.base }

func logf(f func(string, ...any)) func(string, ...any) {
	if f == nil {
		return func(string, ...any) {}
	}
	return f
}
