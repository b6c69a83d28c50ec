package main

// Eventfd ping-pongs: mpmc queues in eventfd mode (mpmc.Config.Eventfd),
// each end waiting in Go's netpoller (Events.Wait) for its queue's
// eventfd, next to the futex and to a raw eventfd pair (blocking read(2)
// and write(2), no shared memory). The queues are anonymous: the parent
// creates both and Sends each to each child over its own socketpair
// (descriptors 3: requests, 4: responses); the raw eventfds are inherited
// (3: client to server, 4: server to client).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

const (
	mechEventfdQueue = "mpmc-eventfd" // mpmc, Config.Eventfd, Events.Wait
	mechRawEventfd   = "eventfd"      // two raw eventfds
)

// eventfdPingCases are the rows of this file, after pingCases.
var eventfdPingCases = []ppCase{
	{Name: "mpmc eventfd mode, netpoller wait", Mech: mechEventfdQueue, SetSpin: true, Spin: 0},
	{Name: "raw eventfd", Mech: mechRawEventfd},
}

type eventfdQueuePing struct{ out, in *mpmc.Queue }

func (p *eventfdQueuePing) send(msg []byte) error { return p.out.Enqueue(context.Background(), msg) }
func (p *eventfdQueuePing) stop() error           { return p.send(stopMsg()) }
func (p *eventfdQueuePing) close()                { p.out.Close(); p.in.Close() }
func (p *eventfdQueuePing) recv(buf []byte) error {
	for {
		n, err := p.in.TryDequeue(buf)
		if !errors.Is(err, mpmc.ErrEmpty) {
			return checkPing(n, buf, err)
		}
		if err := p.in.NotEmpty().Wait(context.Background()); err != nil {
			return err
		}
	}
}

type rawEventfdPing struct{ out, in int }

func (p rawEventfdPing) send(msg []byte) error {
	v := uint64(1)
	if len(msg) > 0 && msg[0] == stopByte {
		v = 2 // the stop message
	}
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], v)
	_, err := unix.Write(p.out, b[:])
	return err
}
func (p rawEventfdPing) stop() error { return p.send(stopMsg()) }
func (p rawEventfdPing) close()      { unix.Close(p.out); unix.Close(p.in) }
func (p rawEventfdPing) recv([]byte) error {
	var b [8]byte
	for {
		_, err := unix.Read(p.in, b[:])
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return err
		}
		if binary.NativeEndian.Uint64(b[:]) >= 2 {
			return errStop
		}
		return nil
	}
}

// openEventfdPing opens a child's end of the eventfd mechanisms.
func openEventfdPing(a ppArgs, client bool) (pingEnd, error) {
	if a.Mech == mechRawEventfd {
		// Inherited: os/exec made them blocking, as wanted here.
		if client {
			return rawEventfdPing{out: inheritedFD, in: inheritedFD + 1}, nil
		}
		return rawEventfdPing{out: inheritedFD + 1, in: inheritedFD}, nil
	}
	var qs [2]*mpmc.Queue
	for i := range qs {
		f := os.NewFile(uintptr(inheritedFD+i), "queue socket")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		qs[i], err = mpmc.Receive(c.(*net.UnixConn))
		c.Close()
		if err != nil {
			return nil, err
		}
		if a.SetSpin {
			qs[i].SetSpin(a.Spin)
		}
	}
	if client {
		return &eventfdQueuePing{out: qs[0], in: qs[1]}, nil
	}
	return &eventfdQueuePing{out: qs[1], in: qs[0]}, nil
}

// eventfdPingSetup makes what the children of an eventfd case need: their
// ExtraFiles, and for the queue case a function that hands the queues
// over once they have started, and a cleanup.
func eventfdPingSetup(a *ppArgs) (clientFiles, serverFiles []*os.File, handOver func() error, cleanup func(), err error) {
	if a.Mech == mechRawEventfd {
		var fds [2]int
		for i := range fds {
			if fds[i], err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
				return nil, nil, nil, nil, err
			}
		}
		// Each side holds both: the client writes 3 and reads 4.
		dup := func(fd int) *os.File {
			d, _ := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
			return os.NewFile(uintptr(d), "eventfd")
		}
		clientFiles = []*os.File{dup(fds[0]), dup(fds[1])}
		serverFiles = []*os.File{os.NewFile(uintptr(fds[0]), "eventfd"), os.NewFile(uintptr(fds[1]), "eventfd")}
		return clientFiles, serverFiles, func() error { return nil }, func() {}, nil
	}
	var qs [2]*mpmc.Queue
	var conns []*net.UnixConn
	cleanup = func() {
		for _, q := range qs {
			if q != nil {
				q.Close()
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	for i := range qs {
		if qs[i], err = mpmc.CreateAnonymous(mpmc.Config{Capacity: 64, SlotSize: pingSize, Eventfd: true}); err != nil {
			cleanup()
			return nil, nil, nil, nil, err
		}
	}
	// Per child, a socket per queue: descriptors 3 (requests), 4
	// (responses).
	pair := func() (*net.UnixConn, *os.File, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, nil, err
		}
		f := os.NewFile(uintptr(fds[0]), "parent")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			unix.Close(fds[1])
			return nil, nil, err
		}
		return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "child"), nil
	}
	for _, files := range []*[]*os.File{&clientFiles, &serverFiles} {
		for range qs {
			c, f, err := pair()
			if err != nil {
				cleanup()
				return nil, nil, nil, nil, err
			}
			conns = append(conns, c)
			*files = append(*files, f)
		}
	}
	handOver = func() error {
		for i, c := range conns {
			if err := qs[i%2].Send(c); err != nil {
				return fmt.Errorf("hand the ping queues over: %w", err)
			}
		}
		return nil
	}
	return clientFiles, serverFiles, handOver, cleanup, nil
}
