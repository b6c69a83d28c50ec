// Command eventloop is seeds/000's event-driven shared-memory IPC, end to
// end, on an mpmc queue: shared memory is the data path (an anonymous,
// sealed memfd queue), an eventfd the notification path, a unix socket
// the control path.
//
// The writer listens on a unix socket, starts the readers, accepts each one
// and hands it the queue with Send (the memfd and both eventfds, with
// SCM_RIGHTS). Each reader joins with Receive and waits in an epoll loop
// (golang.org/x/sys/unix EpollWait) on the queue's eventfd next to its
// control socket, draining the queue whenever it is woken. The writer
// enqueues its messages in bursts, shuts the queue down, and every reader
// drains what is left, sees ErrClosed and exits, listing what it read. The
// writer checks that every message was read exactly once and prints a last
// line starting with OK; it exits 1 with a FAIL line otherwise.
//
//	go run ./examples/eventloop
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

const (
	roleEnv   = "EVENTLOOP_ROLE"
	socketEnv = "EVENTLOOP_SOCKET"
	readers   = 3
	messages  = 30000
	burst     = 500
)

func main() {
	var err error
	if os.Getenv(roleEnv) == "reader" {
		err = reader(os.Getenv(socketEnv))
	} else {
		err = writer()
	}
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
}

func writer() error {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: 1024, SlotSize: 64, Eventfd: true})
	if err != nil {
		return err
	}
	defer q.Close()
	// An abstract socket: no file to remove afterwards.
	addr := fmt.Sprintf("@mpmc-eventloop-%d", os.Getpid())
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return err
	}
	defer ln.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		out string
		err error
	}
	results := make(chan result, readers)
	for i := range readers {
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), roleEnv+"=reader", socketEnv+"="+addr)
		cmd.Stderr = os.Stderr
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start reader %d: %w", i, err)
		}
		go func() {
			err := cmd.Wait()
			results <- result{out.String(), err}
		}()
	}
	// Accept each reader and hand it the queue: the control path.
	var conns []*net.UnixConn
	for range readers {
		ln.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.AcceptUnix()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		conns = append(conns, c)
		if err := q.Send(c); err != nil {
			return err
		}
	}
	fmt.Printf("writer: %d readers joined the queue (memfd and eventfds handed over with SCM_RIGHTS)\n", readers)
	// The data path, in bursts, so that the readers go idle in epoll and
	// are woken through the eventfd.
	msg := make([]byte, 16)
	for i := range messages {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if err := q.Enqueue(ctx, msg); err != nil {
			return fmt.Errorf("enqueue %d: %w", i, err)
		}
		if i%burst == burst-1 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	// The shutdown flag (seeds/000's activation = false) and a wake-up
	// through the eventfds.
	if err := q.Shutdown(); err != nil {
		return err
	}
	total, wakes := 0, 0
	seen := make([]bool, messages)
	for range readers {
		r := <-results
		if r.err != nil {
			return fmt.Errorf("reader: %v", r.err)
		}
		lines := strings.Split(strings.TrimSpace(r.out), "\n")
		var n, w int
		if _, err := fmt.Sscanf(lines[len(lines)-1], "read %d wakeups %d", &n, &w); err != nil {
			return fmt.Errorf("reader's last line %q: %v", lines[len(lines)-1], err)
		}
		for _, l := range lines[:len(lines)-1] {
			id, err := strconv.Atoi(l)
			if err != nil || id < 0 || id >= messages {
				return fmt.Errorf("reader read %q, not a message id", l)
			}
			if seen[id] {
				return fmt.Errorf("message %d read twice", id)
			}
			seen[id] = true
		}
		total += len(lines) - 1
		wakes += w
	}
	for _, c := range conns {
		c.Close()
	}
	for id, ok := range seen {
		if !ok {
			return fmt.Errorf("message %d never read (%d of %d read)", id, total, messages)
		}
	}
	if left := q.Len(); left != 0 {
		return fmt.Errorf("%d messages left in the queue", left)
	}
	fmt.Printf("OK %d messages read exactly once by %d readers in epoll loops, %d eventfd wake-ups\n", total, readers, wakes)
	return nil
}

func reader(addr string) error {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return err
	}
	defer conn.Close()
	q, err := mpmc.Receive(conn)
	if err != nil {
		return err
	}
	defer q.Close()
	ev := q.NotEmpty()

	// One epoll set: the queue's eventfd and the control socket.
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ev.Fd(), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ev.Fd())}); err != nil {
		return err
	}
	sc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var sockFD int
	sc.Control(func(fd uintptr) { sockFD = int(fd) })
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, sockFD, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(sockFD)}); err != nil {
		return err
	}
	sockOpen := true

	buf := make([]byte, q.SlotSize())
	events := make([]unix.EpollEvent, 2)
	read, wakes := 0, 0
	out := bufio.NewWriter(os.Stdout)
	for {
		// Drain.
		for {
			n, err := q.TryDequeue(buf)
			if err == nil && n == 16 {
				read++
				fmt.Fprintln(out, binary.LittleEndian.Uint64(buf))
				continue
			}
			if errors.Is(err, mpmc.ErrClosed) {
				fmt.Fprintf(out, "read %d wakeups %d\n", read, wakes)
				return out.Flush()
			}
			if err != nil && !errors.Is(err, mpmc.ErrEmpty) {
				return err
			}
			if err == nil {
				return fmt.Errorf("message of %d bytes", n)
			}
			break
		}
		// Arm: announce and re-check; ready means drain again at once.
		ready, poll, err := ev.Arm()
		if err != nil {
			return err
		}
		if ready {
			continue
		}
		n, err := unix.EpollWait(ep, events, int(max(poll/time.Millisecond, 1)))
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, e := range events[:max(n, 0)] {
			switch int(e.Fd) {
			case ev.Fd():
				wakes++
				if err := ev.Consume(); err != nil {
					return err
				}
			case sockFD:
				// The writer hung up (or wrote): the control path. The
				// queue's shutdown flag is what ends us; stop watching.
				if sockOpen {
					unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, sockFD, nil)
					sockOpen = false
				}
			}
		}
	}
}
