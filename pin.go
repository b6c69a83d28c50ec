package mpmc

// Calls in flight, and the records they claim with.
//
// Close must never unmap the segment under a call of the same handle, and
// every claim must be recorded in a record of this handle's participant
// entry that no other call uses at the same time (ring.go, invariant 2).
// Both are solved per processor, with no locked instruction on the common
// path:
//
//   - A short call pins its goroutine to its processor (Go's P, as
//     sync.Pool does) for the call. Record k < pinnedRecords of the entry
//     belongs to the call running on P k, and so does busy[k], a word in
//     process memory that says a call is in flight: only one goroutine runs
//     on a P at a time, and a pinned one is never preempted, so plain stores
//     suffice. A pinned call makes no blocking system call.
//   - Close stores closing and then runs membarrier(2) with
//     MEMBARRIER_CMD_PRIVATE_EXPEDITED, a full barrier on every thread of
//     this process: after it, each call either saw closing or has a busy
//     word that Close sees. Close then waits for the busy words to clear.
//     Where membarrier is refused, each pinned call fences after its busy
//     store instead (one locked instruction).
//   - Everything else (calls that wait, P ids beyond pinnedRecords, long
//     copies, zero-copy holds, recovery) takes a pooled record by
//     compare-and-swap and counts itself in the sharded inflight counter:
//     two or three locked instructions, off the common path.

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// pinLimit is the most bytes a pinned call copies: a pinned goroutine
// delays the garbage collector's stop-the-world, so long copies take the
// other path.
const pinLimit = 64 << 10

const (
	membarrierCmdPrivateExpedited         = 1 << 3
	membarrierCmdRegisterPrivateExpedited = 1 << 4
)

// asymmetric is true when Close can rely on membarrier; it is decided once,
// when the package is loaded.
var asymmetric = func() bool {
	_, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdRegisterPrivateExpedited, 0, 0)
	return e == 0
}()

// barrierAll makes every thread of this process execute a full barrier.
func barrierAll() {
	if asymmetric {
		unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdPrivateExpedited, 0, 0)
	}
}

// busyWord is one processor's in-flight flag, on cache lines of its own.
type busyWord struct {
	n uint32
	_ [hotStride - 4]byte
}

// call is a call's hold on its handle: the record it claims with and how it
// is let go.
type call struct {
	rec *atomic.Uint64
	p   int           // the pinned processor, or -1
	ref *atomic.Int64 // the inflight shard (unpinned calls)
}

// pin starts a short call: pinned, flagged busy, with its processor's
// record. ok is false when the call must take the unpinned path instead
// (see begin) or the handle is closing.
func (q *Queue) pin() (call, bool) {
	p := procPin()
	if p >= pinnedRecords || hookForcesUnpinned() {
		procUnpin()
		return call{}, false
	}
	b := &q.busy[p].n
	setBusy(b)
	if !asymmetric {
		fence()
	}
	if q.closing.Load() {
		clearBusy(b)
		procUnpin()
		return call{}, false
	}
	return call{rec: q.pinned[p], p: p}, true
}

// begin starts an unpinned call, counted in flight. It fails with
// ErrClosed once Close has begun.
func (q *Queue) begin() (call, error) {
	ref := q.refs.enter()
	if q.closing.Load() {
		ref.Add(-1)
		return call{}, ErrClosed
	}
	return call{p: -1, ref: ref}, nil
}

// beginClaiming is begin for a call that claims: with a pooled record.
func (q *Queue) beginClaiming() (call, error) {
	c, err := q.begin()
	if err == nil {
		c.rec = q.takeRecord()
	}
	return c, err
}

// unpin ends a pinned call.
func (q *Queue) unpin(c call) {
	clearBusy(&q.busy[c.p].n)
	procUnpin()
}

// end lets a call go.
func (q *Queue) end(c call) {
	if c.p >= 0 {
		q.unpin(c)
		return
	}
	if c.rec != nil {
		c.rec.Store(0)
	}
	c.ref.Add(-1)
}

// takeRecord takes a free pooled record of this handle's entry, waiting for
// one if all are held (each is held for a call or a zero-copy hold).
func (q *Queue) takeRecord() *atomic.Uint64 {
	for {
		for k := pinnedRecords; k < recordsPerEntry; k++ {
			if r := q.ring.record(q.self, k); r.Load() == 0 && r.CompareAndSwap(0, recInUse) {
				return r
			}
		}
		runtime.Gosched()
	}
}

// busyCalls reports whether a pinned call is in flight.
func (q *Queue) busyCalls() bool {
	for i := range q.busy {
		if atomic.LoadUint32(&q.busy[i].n) != 0 {
			return true
		}
	}
	return false
}

// setBusy and clearBusy are plain stores outside race builds: see the top
// of this file. The race detector cannot know that a P runs one goroutine
// at a time, so race builds use atomics.
func setBusy(b *uint32) {
	if raceEnabled {
		atomic.StoreUint32(b, 1)
		return
	}
	*(*uint32)(unsafe.Pointer(b)) = 1
}

func clearBusy(b *uint32) {
	// After the call's last access to the mapping: a release store.
	if raceEnabled || !plainIsRelease {
		atomic.StoreUint32(b, 0)
		return
	}
	*(*uint32)(unsafe.Pointer(b)) = 0
}
