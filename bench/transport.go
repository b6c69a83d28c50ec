package main

// The child side of each cross-process mechanism for the throughput runs: a
// sender for producers and a receiver for consumers. Descriptors (pipe ends,
// socket ends) arrive as the child's descriptor 3; the queue and the message
// queue are opened by name.

import (
	"context"
	"errors"
	"fmt"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

// Mechanism names used in results.
const (
	mechQueue    = "mpmc"
	mechPipe     = "pipe"
	mechUnixSock = "unix-seqpacket"
	mechMQ       = "posix-mq"
	// mechQueueSpin is mpmc driven by TryEnqueue/TryDequeue in a loop
	// (spinning, never sleeping), as the reference is.
	mechQueueSpin = "mpmc spinning"
	// mechRef is the reference Vyukov queue (refq.go), spinning.
	mechRef = "reference Vyukov"
)

// errEOS marks the end of the stream at a receiver.
var errEOS = errors.New("end of stream")

// end is either end of a mechanism: producers send, consumers receive;
// recv returns errEOS once every producer is done and everything was
// received.
type end interface {
	send(msg []byte) error
	recv(buf []byte) (int, error)
	close() error
}

const inheritedFD = 3

// openEnd opens a producer's (producer true) or a consumer's end.
func openEnd(a tputArgs, producer bool) (end, error) {
	switch a.Mech {
	case mechQueue, mechQueueSpin:
		q, err := mpmc.Open(a.Path)
		if err != nil {
			return nil, err
		}
		if a.SetSpin {
			q.SetSpin(a.Spin)
		}
		if a.Mech == mechQueueSpin {
			return queueSpinEnd{q}, nil
		}
		return queueEnd{q}, nil
	case mechRef:
		q, err := openRef(a.Path)
		if err != nil {
			return nil, err
		}
		return refEnd{q}, nil
	case mechPipe, mechUnixSock:
		return fdEnd{fd: inheritedFD, size: a.Size, stream: a.Mech == mechPipe}, nil
	case mechMQ:
		flag := unix.O_RDONLY
		if producer {
			flag = unix.O_WRONLY
		}
		fd, err := mqOpen(a.Path, flag, 0, nil)
		if err != nil {
			return nil, err
		}
		return mqEnd{fd}, nil
	}
	return nil, fmt.Errorf("unknown mechanism %q", a.Mech)
}

// queueEnd is either end of the shared-memory queue.
type queueEnd struct{ q *mpmc.Queue }

func (e queueEnd) send(msg []byte) error { return e.q.Enqueue(context.Background(), msg) }

func (e queueEnd) recv(buf []byte) (int, error) {
	n, err := e.q.Dequeue(context.Background(), buf)
	if errors.Is(err, mpmc.ErrClosed) {
		return 0, errEOS
	}
	return n, err
}

func (e queueEnd) close() error { return e.q.Close() }

// spinPause is called after the i-th failed attempt of a spinning end: it
// yields the CPU (sched_yield) every 256th, so that on a loaded machine a
// spinning end whose peer was descheduled hands the CPU over instead of
// burning its whole time slice. Both spinning mechanisms use it alike.
func spinPause(i int) {
	if i&255 == 0 {
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	}
}

// queueSpinEnd is an end of the queue that spins on the Try calls.
type queueSpinEnd struct{ q *mpmc.Queue }

func (e queueSpinEnd) send(msg []byte) error {
	for i := 1; ; i++ {
		if err := e.q.TryEnqueue(msg); err != mpmc.ErrFull {
			return err
		}
		spinPause(i)
	}
}

func (e queueSpinEnd) recv(buf []byte) (int, error) {
	for i := 1; ; i++ {
		n, err := e.q.TryDequeue(buf)
		switch err {
		case mpmc.ErrEmpty:
			spinPause(i)
			continue
		case mpmc.ErrClosed:
			return 0, errEOS
		}
		return n, err
	}
}

func (e queueSpinEnd) close() error { return e.q.Close() }

// refEnd is an end of the reference queue; it spins.
type refEnd struct{ q *refQueue }

func (e refEnd) send(msg []byte) error {
	for i := 1; ; i++ {
		if err := e.q.tryEnqueue(msg); err != errRefFull {
			return err
		}
		spinPause(i)
	}
}

func (e refEnd) recv(buf []byte) (int, error) {
	for i := 1; ; i++ {
		n, err := e.q.tryDequeue(buf)
		switch err {
		case errRefEmpty:
			spinPause(i)
			continue
		case errRefClosed:
			return 0, errEOS
		}
		return n, err
	}
}

func (e refEnd) close() error { return e.q.close() }

// fdEnd is an end of a pipe (a byte stream of fixed-size messages, each
// written atomically since it is at most PIPE_BUF) or of a SOCK_SEQPACKET
// socket (one record per call).
type fdEnd struct {
	fd     int
	size   int
	stream bool
}

func (e fdEnd) send(msg []byte) error {
	for len(msg) > 0 {
		n, err := unix.Write(e.fd, msg)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if !e.stream && n != len(msg) {
			return fmt.Errorf("short write of a record: %d of %d", n, len(msg))
		}
		msg = msg[n:]
	}
	return nil
}

func (e fdEnd) recv(buf []byte) (int, error) {
	got := 0
	for {
		n, err := unix.Read(e.fd, buf[got:e.size])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			if got != 0 {
				return 0, fmt.Errorf("stream ended inside a message (%d of %d bytes)", got, e.size)
			}
			return 0, errEOS
		}
		got += n
		if !e.stream || got == e.size {
			return got, nil
		}
	}
}

func (e fdEnd) close() error { return unix.Close(e.fd) }

// mqEnd is either end of a POSIX message queue; an empty message ends the
// stream (the parent sends one per consumer once the producers are done).
type mqEnd struct{ fd int }

func (e mqEnd) send(msg []byte) error { return mqSend(e.fd, msg) }

func (e mqEnd) recv(buf []byte) (int, error) {
	n, err := mqRecv(e.fd, buf)
	if err == nil && n == 0 {
		return 0, errEOS
	}
	return n, err
}

func (e mqEnd) close() error { return unix.Close(e.fd) }
