package main

// Raw futex operations on 32-bit words of a MAP_SHARED mapping, for the
// futex ping-pong baseline. They are the shared (non-private) operations:
// the private flag keys a futex by address space and would lose wake-ups
// between processes.

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	futexWaitOp = 0 // FUTEX_WAIT, shared
	futexWakeOp = 1 // FUTEX_WAKE, shared
)

// futexWait sleeps while *w == val (or until a spurious wake-up or signal;
// the caller re-checks).
func futexWait(w *atomic.Uint32, val uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitOp, uintptr(val), 0, 0, 0)
}

// futexWake wakes one waiter on w.
func futexWake(w *atomic.Uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakeOp, 1, 0, 0, 0)
}

// futexPageSize is the size of the file that holds the two futex words.
const futexPageSize = 4096

// createFutexFile makes a zeroed one-page file for two futex words and
// registers it for removal.
func createFutexFile() (string, error) {
	p := shmPath("futex")
	mem, err := mapFile(p, futexPageSize)
	if err != nil {
		done(p)
		return "", err
	}
	return p, unix.Munmap(mem)
}

// mapFutexWords maps the file at path and returns its two words, 64 bytes
// apart (one cache line each): the first carries pings, the second pongs.
func mapFutexWords(path string) (ping, pong *atomic.Uint32, unmap func(), err error) {
	mem, err := mapFile(path, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(mem) < 128 {
		unix.Munmap(mem)
		return nil, nil, nil, fmt.Errorf("%s: %d bytes, too short", path, len(mem))
	}
	ping = (*atomic.Uint32)(unsafe.Pointer(&mem[0]))
	pong = (*atomic.Uint32)(unsafe.Pointer(&mem[64]))
	return ping, pong, func() { unix.Munmap(mem) }, nil
}
