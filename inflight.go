package mpmc

import (
	"sync/atomic"
	"unsafe"
)

// inflight counts the calls in flight on a handle, so that Close unmaps only
// once none is (see Queue.acquire). Every call writes it twice, so it is
// split into shards on cache-line pairs of their own, and a call picks its
// shard by the address of its goroutine's stack: goroutines sharing a
// handle then mostly write different lines, instead of all fighting for
// one.
type inflight struct {
	shards [inflightShards]struct {
		n atomic.Int64
		_ [120]byte // a 128-byte stride: no adjacent-line prefetch sharing
	}
}

const inflightShards = 16

// enter counts a call in and returns the shard to count it out of.
func (f *inflight) enter() *atomic.Int64 {
	var onStack byte
	// Stacks are at least 2 KiB apart; the bits above that differ between
	// goroutines. The address is only hashed, never used as a pointer.
	s := &f.shards[(uintptr(unsafe.Pointer(&onStack))>>11)%inflightShards].n
	s.Add(1)
	return s
}

// total is the number of calls in flight.
func (f *inflight) total() int64 {
	var t int64
	for i := range f.shards {
		t += f.shards[i].n.Load()
	}
	return t
}
