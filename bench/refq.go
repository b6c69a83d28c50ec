package main

// The reference: a textbook Vyukov bounded MPMC queue (1024cores), written
// here independently of the library, on the same kind of mapping (a
// MAP_SHARED file under /dev/shm). One CAS on the position per operation,
// one sequence word per slot, the payload copied in and out, release stores
// through sync/atomic (XCHG on amd64). No attribution, no waiting, no
// recovery: what is left of mpmc's cost once those are taken away.
//
// Layout: the enqueue position at offset 0, the dequeue position at 128, a
// closed flag at 256 (each in a line pair of its own), then the slots, 128
// bytes apart: the sequence word at +0, the length at +8, the payload at +64.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	refEnqOff    = 0
	refDeqOff    = 128
	refClosedOff = 256
	refSlotsOff  = 384
	refSlotSize  = 128
	refSeqOff    = 0
	refLenOff    = 8
	refDataOff   = 64
	refMaxMsg    = refSlotSize - refDataOff // 64 bytes
)

// Errors of the reference queue.
var (
	errRefFull   = errors.New("ref: full")
	errRefEmpty  = errors.New("ref: empty")
	errRefClosed = errors.New("ref: closed and drained")
)

// refQueue is one process's view of a reference queue.
type refQueue struct {
	path string
	mem  []byte
	base unsafe.Pointer
	mask uint64
}

func refFileSize(capacity int) int { return refSlotsOff + capacity*refSlotSize }

// createRef makes the queue file at path (capacity a power of two) and maps it.
func createRef(path string, capacity int) (*refQueue, error) {
	if capacity < 2 || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("ref: capacity %d is not a power of two", capacity)
	}
	mem, err := mapFile(path, refFileSize(capacity))
	if err != nil {
		return nil, err
	}
	q := &refQueue{path: path, mem: mem, base: unsafe.Pointer(&mem[0]), mask: uint64(capacity - 1)}
	for i := range capacity {
		q.seq(uint64(i)).Store(uint64(i))
	}
	return q, nil
}

// openRef maps the existing queue file at path.
func openRef(path string) (*refQueue, error) {
	mem, err := mapFile(path, 0)
	if err != nil {
		return nil, err
	}
	n := (len(mem) - refSlotsOff) / refSlotSize
	if n < 2 || n&(n-1) != 0 || refFileSize(n) != len(mem) {
		unix.Munmap(mem)
		return nil, fmt.Errorf("ref: %s: size %d is no queue", path, len(mem))
	}
	return &refQueue{path: path, mem: mem, base: unsafe.Pointer(&mem[0]), mask: uint64(n - 1)}, nil
}

func (q *refQueue) word(off uintptr) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Add(q.base, off))
}

func (q *refQueue) slot(pos uint64) unsafe.Pointer {
	return unsafe.Add(q.base, refSlotsOff+uintptr(pos&q.mask)*refSlotSize)
}

func (q *refQueue) seq(pos uint64) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Add(q.slot(pos), refSeqOff))
}

func (q *refQueue) payload(pos uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(q.slot(pos), refDataOff)), refMaxMsg)
}

// length is the slot's length word, written plainly before the release
// store of the sequence and read after its acquire load.
func (q *refQueue) length(pos uint64) *uint32 {
	return (*uint32)(unsafe.Add(q.slot(pos), refLenOff))
}

// tryEnqueue copies msg (at most 64 bytes) into a free slot, or returns
// errRefFull.
func (q *refQueue) tryEnqueue(msg []byte) error {
	if len(msg) > refMaxMsg {
		return fmt.Errorf("ref: message of %d bytes, at most %d", len(msg), refMaxMsg)
	}
	enq := q.word(refEnqOff)
	pos := enq.Load()
	for {
		seq := q.seq(pos).Load()
		switch dif := int64(seq - pos); {
		case dif == 0:
			if enq.CompareAndSwap(pos, pos+1) {
				copy(q.payload(pos), msg)
				*q.length(pos) = uint32(len(msg))
				q.seq(pos).Store(pos + 1)
				return nil
			}
			pos = enq.Load()
		case dif < 0:
			return errRefFull
		default:
			pos = enq.Load()
		}
	}
}

// tryDequeue copies the oldest message into buf and returns its length, or
// returns errRefEmpty (errRefClosed once closed and drained).
func (q *refQueue) tryDequeue(buf []byte) (int, error) {
	deq := q.word(refDeqOff)
	pos := deq.Load()
	for {
		seq := q.seq(pos).Load()
		switch dif := int64(seq - (pos + 1)); {
		case dif == 0:
			if deq.CompareAndSwap(pos, pos+1) {
				n := copy(buf, q.payload(pos)[:*q.length(pos)])
				q.seq(pos).Store(pos + q.mask + 1)
				return n, nil
			}
			pos = deq.Load()
		case dif < 0:
			if q.word(refClosedOff).Load() != 0 {
				// Re-check: a message may have landed before the flag.
				if q.seq(pos).Load() == pos+1 {
					continue
				}
				return 0, errRefClosed
			}
			return 0, errRefEmpty
		default:
			pos = deq.Load()
		}
	}
}

// shutdown marks the queue closed: consumers drain it, then get errRefClosed.
func (q *refQueue) shutdown() { q.word(refClosedOff).Store(1) }

// close unmaps the queue.
func (q *refQueue) close() error { return unix.Munmap(q.mem) }
