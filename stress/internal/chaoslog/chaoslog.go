// Package chaoslog is the per-child log of a chaos run: how many messages a
// producer had acknowledged, and which messages a consumer had received, kept
// in shared memory so that they survive the child's SIGKILL, and written
// without a system call per message.
//
// The parent creates each log as an anonymous memory file (memfd_create),
// reserves its whole size up front (so a write can never fault for lack of
// memory), seals its size, maps it, and hands the descriptor to the child,
// which maps it too (MAP_SHARED). The file has no name, so nothing is ever
// left in /dev/shm: it disappears when the last descriptor and mapping are
// gone, however the child and the parent end.
//
// A producer's log is a counter: after Enqueue of sequence number s returned
// nil, the producer stores s+1. Sequence numbers are sent in order, so the
// counter is exactly the set of acknowledged messages.
//
// A consumer's log is a ring of records that the parent drains while the
// child runs: the consumer writes a record with plain stores, then bumps the
// count with an atomic store (the release that publishes the record); the
// parent loads the count, reads the records, and stores how many it has
// taken, which frees their places. A consumer whose ring is full waits for
// the parent.
//
// Layout (little endian; counters are native 64-bit atomics, each on a cache
// line of its own):
//
//	0    magic     uint64
//	8    kind      uint64  1 producer, 2 consumer
//	16   ring      uint64  ring capacity in records (a power of two; 0 for a producer)
//	64   count     uint64  acknowledged messages (producer), records written (consumer)
//	128  consumed  uint64  records the parent has taken (consumer)
//	192  waits     uint64  times the consumer found its ring full
//	256  records   ring x 24 bytes: producer uint32, flags uint32, seq uint64,
//	               receive time int64 (CLOCK_MONOTONIC nanoseconds)
package chaoslog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmq/mpmc/stress/internal/verify"
	"golang.org/x/sys/unix"
)

// Kinds of logs.
const (
	Producer = 1
	Consumer = 2
)

const (
	magic = 0x676f6c736f616863 // "chaoslog"

	offMagic    = 0
	offKind     = 8
	offRing     = 16
	offCount    = 64
	offConsumed = 128
	offWaits    = 192

	// HeaderSize is the size of the header, where the records begin.
	HeaderSize = 256
	// RecordSize is the size of one record of a consumer's ring.
	RecordSize = 24

	flagCorrupt = 1

	// maxRing bounds the ring, so a damaged header cannot ask for a huge
	// mapping.
	maxRing = 1 << 26

	// fullWait is how long a consumer with a full ring sleeps before it
	// looks again.
	fullWait = 50 * time.Microsecond
)

// batch is how many records Drain decodes per call of its function.
const batch = 4096

// Log is one child's log, as mapped by the parent or by the child.
type Log struct {
	f        *os.File
	mem      []byte
	kind     uint64
	ring     uint64
	count    *atomic.Uint64
	consumed *atomic.Uint64
	waits    *atomic.Uint64

	next uint64          // writer: the next record's number
	buf  []verify.Record // reader: Drain's batch
}

// Create makes a new log of the given kind, with a ring of at least ring
// records for a consumer (rounded up to a power of two), and maps it. name
// only labels the memory file (in /proc/PID/fd).
func Create(name string, kind int, ring int) (*Log, error) {
	var r uint64
	switch kind {
	case Producer:
	case Consumer:
		if ring < 1 || ring > maxRing {
			return nil, fmt.Errorf("chaoslog: ring of %d records (at most %d)", ring, maxRing)
		}
		r = 1 << bits.Len64(uint64(ring-1))
	default:
		return nil, fmt.Errorf("chaoslog: unknown kind %d", kind)
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("chaoslog: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	size := int64(HeaderSize + r*RecordSize)
	if err := unix.Fallocate(fd, 0, 0, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("chaoslog: reserving %d bytes: %w", size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("chaoslog: sealing: %w", err)
	}
	l, err := mapLog(f, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	ne := binary.NativeEndian
	ne.PutUint64(l.mem[offKind:], uint64(kind))
	ne.PutUint64(l.mem[offRing:], r)
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&l.mem[offMagic])), magic)
	l.kind, l.ring = uint64(kind), r
	return l, nil
}

// Open maps the log on descriptor f, as handed to a child, and checks that
// it is a log of the given kind.
func Open(f *os.File, kind int) (*Log, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("chaoslog: %w", err)
	}
	if st.Size() < HeaderSize {
		return nil, fmt.Errorf("chaoslog: %s is %d bytes, shorter than a log header", f.Name(), st.Size())
	}
	l, err := mapLog(f, st.Size())
	if err != nil {
		return nil, err
	}
	ne := binary.NativeEndian
	l.kind, l.ring = ne.Uint64(l.mem[offKind:]), ne.Uint64(l.mem[offRing:])
	switch {
	case atomic.LoadUint64((*uint64)(unsafe.Pointer(&l.mem[offMagic]))) != magic:
		err = errors.New("no log magic")
	case l.kind != uint64(kind):
		err = fmt.Errorf("a log of kind %d, not %d", l.kind, kind)
	case l.ring > maxRing || l.ring&(l.ring-1) != 0 || (kind == Consumer && l.ring == 0):
		err = fmt.Errorf("ring of %d records", l.ring)
	case st.Size() != int64(HeaderSize+l.ring*RecordSize):
		err = fmt.Errorf("%d bytes for a ring of %d records", st.Size(), l.ring)
	}
	if err != nil {
		l.unmap()
		return nil, fmt.Errorf("chaoslog: %s: %v", f.Name(), err)
	}
	l.next = l.count.Load()
	return l, nil
}

func mapLog(f *os.File, size int64) (*Log, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("chaoslog: mmap: %w", err)
	}
	u := func(off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&mem[off])) }
	return &Log{f: f, mem: mem, count: u(offCount), consumed: u(offConsumed), waits: u(offWaits)}, nil
}

// File is the log's descriptor, to hand to a child (exec.Cmd.ExtraFiles).
func (l *Log) File() *os.File { return l.f }

func (l *Log) unmap() {
	if l.mem != nil {
		unix.Munmap(l.mem)
		l.mem = nil
	}
}

// Close unmaps the log and closes its descriptor. No method may be called
// after Close.
func (l *Log) Close() error {
	l.unmap()
	return l.f.Close()
}

// Ack records, in a producer's log, that n messages (sequence numbers 0 to
// n-1) were acknowledged.
func (l *Log) Ack(n uint64) { l.count.Store(n) }

// Acked returns what the producer last recorded with Ack.
func (l *Log) Acked() uint64 { return l.count.Load() }

// Append records one received message in a consumer's log, waiting while
// the ring is full. A single goroutine may call it.
func (l *Log) Append(r verify.Record) {
	for l.next-l.consumed.Load() >= l.ring {
		l.waits.Add(1)
		time.Sleep(fullWait)
	}
	off := HeaderSize + (l.next&(l.ring-1))*RecordSize
	b := l.mem[off : off+RecordSize]
	var flags uint32
	if r.Corrupt {
		flags = flagCorrupt
	}
	binary.LittleEndian.PutUint32(b[0:], r.Producer)
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint64(b[8:], r.Seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(r.At))
	l.next++
	l.count.Store(l.next) // publishes the record
}

// Written returns the number of records a consumer has written.
func (l *Log) Written() uint64 { return l.count.Load() }

// Waits returns how many times the consumer found its ring full.
func (l *Log) Waits() uint64 { return l.waits.Load() }

// Drain passes the records written since the last Drain to fn, in order and
// in batches (the slice is reused after fn returns), frees their places in
// the ring, and returns how many there were. A single goroutine may call it.
// It also reports an error if the count in shared memory is impossible (the
// log was damaged); the records before that point were passed to fn.
func (l *Log) Drain(fn func([]verify.Record)) (uint64, error) {
	if l.buf == nil {
		l.buf = make([]verify.Record, 0, batch)
	}
	from := l.consumed.Load()
	to := l.count.Load()
	if to-from > l.ring {
		return 0, fmt.Errorf("chaoslog: %d records written but %d taken, more than the ring of %d", to, from, l.ring)
	}
	for pos := from; pos != to; {
		n := min(to-pos, batch)
		l.buf = l.buf[:0]
		for i := range n {
			off := HeaderSize + ((pos+i)&(l.ring-1))*RecordSize
			b := l.mem[off : off+RecordSize]
			l.buf = append(l.buf, verify.Record{
				Producer: binary.LittleEndian.Uint32(b[0:]),
				Corrupt:  binary.LittleEndian.Uint32(b[4:])&flagCorrupt != 0,
				Seq:      binary.LittleEndian.Uint64(b[8:]),
				At:       int64(binary.LittleEndian.Uint64(b[16:])),
			})
		}
		fn(l.buf)
		pos += n
		l.consumed.Store(pos)
	}
	return to - from, nil
}
