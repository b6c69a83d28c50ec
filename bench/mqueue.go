package main

// POSIX message queues through raw system calls (no cgo): mq_open,
// mq_timedsend, mq_timedreceive and mq_unlink. On Linux a message queue
// descriptor is a file descriptor, closed with close(2). Names are passed to
// the kernel without the leading slash that the C library strips.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mqAttr is struct mq_attr on 64-bit Linux.
type mqAttr struct {
	Flags   int64
	Maxmsg  int64
	Msgsize int64
	Curmsgs int64
	_       [4]int64
}

// mqOpen opens (or with unix.O_CREAT creates, using attr) the queue name.
func mqOpen(name string, oflag int, mode uint32, attr *mqAttr) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	r, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(oflag|unix.O_CLOEXEC), uintptr(mode), uintptr(unsafe.Pointer(attr)), 0, 0)
	if e != 0 {
		return -1, fmt.Errorf("mq_open %s: %w", name, e)
	}
	return int(r), nil
}

// mqUnlink removes the queue name.
func mqUnlink(name string) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return fmt.Errorf("mq_unlink %s: %w", name, e)
	}
	return nil
}

var mqDummy byte

// mqSend sends msg (which may be empty) at priority 0, blocking while the
// queue is full.
func mqSend(fd int, msg []byte) error {
	p := unsafe.Pointer(&mqDummy)
	if len(msg) > 0 {
		p = unsafe.Pointer(&msg[0])
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(fd), uintptr(p), uintptr(len(msg)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("mq_timedsend: %w", e)
		}
		return nil
	}
}

// mqRecv receives the next message into buf, which must hold at least the
// queue's message size, blocking while the queue is empty.
func mqRecv(fd int, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, errors.New("mq_timedreceive: empty buffer")
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, fmt.Errorf("mq_timedreceive: %w", e)
		}
		return int(r), nil
	}
}

// mqCreate creates a new queue for messages of up to msgSize bytes, asking
// for capacity messages and settling for fewer if the system refuses; it
// returns the descriptor, the capacity granted and the name, registered for
// unlinking.
//
// Capacity is the first of: capacity, msg_max, then halvings of capacity
// that the system accepts.
func mqCreate(msgSize, capacity int) (fd, granted int, name string, err error) {
	// Queue memory counts against RLIMIT_MSGQUEUE (800 KiB by default);
	// raising it needs no privilege up to the hard limit.
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MSGQUEUE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		unix.Setrlimit(unix.RLIMIT_MSGQUEUE, &rl)
	}
	name = newName("mq")
	// Without CAP_SYS_RESOURCE the kernel caps the capacity at
	// /proc/sys/fs/mqueue/msg_max: try that next.
	tries := []int{capacity}
	if b, err := os.ReadFile("/proc/sys/fs/mqueue/msg_max"); err == nil {
		if m, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && m > 0 && m < capacity {
			tries = append(tries, m)
		}
	}
	for c := capacity / 2; c >= 1; c /= 2 {
		tries = append(tries, c)
	}
	var first error
	for _, c := range tries {
		attr := mqAttr{Maxmsg: int64(c), Msgsize: int64(msgSize)}
		fd, err = mqOpen(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600, &attr)
		if err == nil {
			register(name, func() { mqUnlink(name) })
			return fd, c, name, nil
		}
		if first == nil {
			first = err
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EMFILE) && !errors.Is(err, unix.ENOMEM) {
			break
		}
	}
	return -1, 0, "", first
}
