// Command eventloop is seeds/000's event-driven shared-memory IPC, end to
// end, on an mpmc queue: shared memory is the data path (an anonymous,
// sealed memfd queue), an eventfd the notification path, a unix socket
// the control path.
//
// The writer listens on a unix socket, starts the readers, accepts each one
// and hands it the queue with Send (the memfd and both eventfds, with
// SCM_RIGHTS). There are Go readers and C readers. Each Go reader joins
// with Receive and waits in an epoll loop (golang.org/x/sys/unix
// EpollWait) on the queue's eventfd next to its control socket, draining
// the queue whenever it is woken. Each C reader (reader.c, on the C
// participant c/mpmc.c, which the writer builds with cc) does the same in
// C: it receives the hand-over itself (LAYOUT.md section 14), joins with
// mpmc_open_fd and runs section 15's arm / epoll_wait / read / drain loop.
// Without a C compiler the writer says so and runs the Go readers only.
//
// The writer is an event loop too: it enqueues with TryEnqueue in bursts
// larger than the queue, and whenever the queue is full it arms the
// producers' eventfd and polls it, so that the readers' claims must wake it
// through that eventfd (a wait that runs out its idle poll hint is a lost
// wake-up, and fails the run). Then it shuts the queue down, every reader
// drains what is left, sees the queue closed, passes Shutdown's eventfd
// event on to the next reader (LAYOUT.md 15) and exits, listing what it
// read. The writer checks every reader's exit status and stderr, that every
// message was read exactly once, that each C reader read some, and that no
// process leaked a descriptor, and prints a last line starting with OK; it
// exits 1 with a FAIL line otherwise.
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
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

const (
	roleEnv   = "EVENTLOOP_ROLE"
	socketEnv = "EVENTLOOP_SOCKET"
	// RequireCEnv set to 1 makes the writer fail, instead of running the
	// Go readers only, when it cannot build the C reader (the test sets it
	// whenever cc is installed).
	requireCEnv = "EVENTLOOP_REQUIRE_C"
	goReaders   = 3
	cReaders    = 2
	capacity    = 256
	messages    = 30000
	burst       = 1000 // more than capacity: the writer waits for room
	ccFlags     = "-std=c11 -O2 -Wall -Wextra -Werror"
)

func main() {
	before, err := openFDs()
	if err == nil {
		if os.Getenv(roleEnv) == "reader" {
			err = reader(os.Getenv(socketEnv))
		} else {
			err = writer()
		}
	}
	if err == nil {
		err = leaked(before)
	}
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
}

// openFDs returns this process's open descriptors and what they are, once
// the Go runtime's own (its netpoller's) exist.
func openFDs() (map[string]string, error) {
	r, w, err := os.Pipe() // initialises the netpoller
	if err != nil {
		return nil, err
	}
	r.Close()
	w.Close()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	fds := map[string]string{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil {
			fds[e.Name()] = target
		}
	}
	return fds, nil
}

// leaked reports the descriptors open now that were not in before.
func leaked(before map[string]string) error {
	now, err := openFDs()
	if err != nil {
		return err
	}
	var extra []string
	for fd, target := range now {
		if before[fd] != target && !strings.HasPrefix(target, "/proc/") { // ReadDir's own
			extra = append(extra, fd+" ("+target+")")
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("descriptors leaked: %s", strings.Join(extra, ", "))
	}
	return nil
}

// sources finds reader.c and the C participant: next to this file when it
// was built from the repository (go run, go test), or above the working
// directory.
func sources() (reader, cdir string, ok bool) {
	var dirs []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dirs = append(dirs, filepath.Join(filepath.Dir(file), "..", ".."))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			dirs = append(dirs, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, d := range dirs {
		r := filepath.Join(d, "examples", "eventloop", "reader.c")
		c := filepath.Join(d, "c")
		if _, err := os.Stat(r); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(c, "mpmc.c")); err == nil {
			return r, c, true
		}
	}
	return "", "", false
}

// buildCReader compiles reader.c with c/mpmc.c into dir. Without a C
// compiler, or without the sources, it returns no binary and the reason;
// a compiler that fails is an error.
func buildCReader(dir string) (bin, why string, err error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", "no C compiler (cc) in PATH", nil
	}
	src, cdir, ok := sources()
	if !ok {
		return "", "the C sources (examples/eventloop/reader.c, c/mpmc.c) were not found", nil
	}
	bin = filepath.Join(dir, "reader")
	args := append(strings.Fields(ccFlags), "-I"+cdir, "-o", bin, src, filepath.Join(cdir, "mpmc.c"))
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("cc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, "", nil
}

// A reader process and what it left behind.
type proc struct {
	name        string
	c           bool // a C reader
	cmd         *exec.Cmd
	out, errout strings.Builder
	err         error
	done        chan struct{}
}

func (p *proc) check() error {
	<-p.done
	if p.err != nil || p.errout.Len() > 0 {
		return fmt.Errorf("%s: exit %v, stderr %q, last output %q", p.name, p.err, p.errout.String(), tail(p.out.String()))
	}
	return nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func writer() error {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: capacity, SlotSize: 64, Eventfd: true})
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
	tmp, err := os.MkdirTemp("", "mpmc-eventloop-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cbin, noC, err := buildCReader(tmp)
	if err != nil {
		return err
	}
	nC := cReaders
	if cbin == "" {
		if os.Getenv(requireCEnv) == "1" {
			return fmt.Errorf("%s=1, but the C reader cannot be built: %s", requireCEnv, noC)
		}
		nC = 0
		fmt.Printf("writer: %s: running the Go readers only\n", noC)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var procs []*proc
	exited := make(chan *proc, goReaders+nC)
	for i := range goReaders + nC {
		p := &proc{name: fmt.Sprintf("Go reader %d", i+1), done: make(chan struct{})}
		p.cmd = exec.CommandContext(ctx, exe)
		p.cmd.Env = append(os.Environ(), roleEnv+"=reader", socketEnv+"="+addr)
		if i >= goReaders {
			p.name, p.c = fmt.Sprintf("C reader %d", i-goReaders+1), true
			p.cmd = exec.CommandContext(ctx, cbin, addr)
		}
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errout
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", p.name, err)
		}
		procs = append(procs, p)
		go func() {
			p.err = p.cmd.Wait()
			close(p.done)
			exited <- p
		}()
	}
	// Whatever happens, wait for every reader before returning.
	defer func() {
		cancel()
		for _, p := range procs {
			<-p.done
		}
	}()
	// Accept each reader and hand it the queue: the control path.
	var conns []*net.UnixConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	type accepted struct {
		c   *net.UnixConn
		err error
	}
	acc := make(chan accepted)
	for range procs {
		ln.SetDeadline(time.Now().Add(30 * time.Second))
		go func() {
			c, err := ln.AcceptUnix()
			acc <- accepted{c, err}
		}()
		var a accepted
		select {
		case a = <-acc:
		case p := <-exited:
			ln.Close()
			a = <-acc
			if a.c != nil {
				a.c.Close()
			}
			return fmt.Errorf("%s exited before joining: %v", p.name, p.check())
		}
		if a.err != nil {
			return fmt.Errorf("accept: %w", a.err)
		}
		conns = append(conns, a.c)
		if err := q.Send(a.c); err != nil {
			return err
		}
	}
	fmt.Printf("writer: %d readers (%d Go, %d C) joined the queue (memfd and eventfds handed over with SCM_RIGHTS)\n",
		len(procs), goReaders, nC)

	// The data path, in bursts larger than the queue, so that the readers
	// go idle in epoll and are woken through the consumers' eventfd, and
	// the writer waits for room on the producers' eventfd (an event loop
	// of its own, with poll(2)).
	nf := q.NotFull()
	pfd := []unix.PollFd{{Fd: int32(nf.Fd()), Events: unix.POLLIN}}
	var fullWaits, fullWakes, lost int
	msg := make([]byte, 16)
	for i := 0; i < messages; {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		err := q.TryEnqueue(msg)
		if err == nil {
			i++
			if i%burst == 0 {
				time.Sleep(2 * time.Millisecond)
			}
			continue
		}
		if !errors.Is(err, mpmc.ErrFull) {
			return fmt.Errorf("enqueue %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("enqueue %d: %w", i, err)
		}
		ready, poll, err := nf.Arm()
		if err != nil {
			return err
		}
		if ready {
			continue
		}
		fullWaits++
		n, err := unix.Poll(pfd, int(max((poll+time.Millisecond-1)/time.Millisecond, 1)))
		switch {
		case err == unix.EINTR:
		case err != nil:
			return fmt.Errorf("poll: %w", err)
		case n > 0:
			fullWakes++
			if err := nf.Consume(); err != nil {
				return err
			}
		case poll >= time.Second:
			// Armed with the idle hint: no claim was in the way, so the
			// next reader's claim had to write the eventfd.
			lost++
		}
	}
	// The shutdown flag (seeds/000's activation = false) and a wake-up
	// through the eventfds.
	if err := q.Shutdown(); err != nil {
		return err
	}
	total, wakes, cRead, cWakes := 0, 0, 0, 0
	seen := make([]bool, messages)
	for _, p := range procs {
		if err := p.check(); err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
		var n, w int
		if _, err := fmt.Sscanf(lines[len(lines)-1], "read %d wakeups %d", &n, &w); err != nil {
			return fmt.Errorf("%s's last line %q: %v", p.name, lines[len(lines)-1], err)
		}
		ids := lines[:len(lines)-1]
		if n == 0 {
			ids = nil // strings.Split of "" is [""]
		}
		if len(ids) != n {
			return fmt.Errorf("%s listed %d messages, says it read %d", p.name, len(ids), n)
		}
		for _, l := range ids {
			id, err := strconv.Atoi(l)
			if err != nil || id < 0 || id >= messages {
				return fmt.Errorf("%s read %q, not a message id", p.name, l)
			}
			if seen[id] {
				return fmt.Errorf("message %d read twice (the second time by %s)", id, p.name)
			}
			seen[id] = true
		}
		if p.c && n == 0 {
			return fmt.Errorf("%s read nothing: it did not take part", p.name)
		}
		if p.c {
			cRead += n
			cWakes += w
		}
		total += n
		wakes += w
	}
	for id, ok := range seen {
		if !ok {
			return fmt.Errorf("message %d never read (%d of %d read)", id, total, messages)
		}
	}
	if left := q.Len(); left != 0 {
		return fmt.Errorf("%d messages left in the queue", left)
	}
	if lost > 0 {
		return fmt.Errorf("%d of %d waits for room lost their wake-up (the producers' eventfd was not written)", lost, fullWaits)
	}
	who := fmt.Sprintf("%d readers (%d Go, %d C: %d messages, %d wake-ups)", len(procs), goReaders, nC, cRead, cWakes)
	if nC == 0 {
		who = fmt.Sprintf("%d readers (%d Go, 0 C: %s)", len(procs), goReaders, noC)
	}
	fmt.Printf("writer: the queue was full %d times; the readers woke the writer through the producers' eventfd %d times, 0 wake-ups lost\n",
		fullWaits, fullWakes)
	fmt.Printf("OK %d messages read exactly once by %s in epoll loops, %d eventfd wake-ups\n", total, who, wakes)
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
				// Shut down and drained. Pass Shutdown's event on
				// (LAYOUT.md 15): another reader whose epoll_wait lost
				// it to our read would otherwise sleep out its 2 s hint.
				if _, err := unix.Write(ev.Fd(), []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil && err != unix.EAGAIN {
					return fmt.Errorf("write eventfd: %w", err)
				}
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
