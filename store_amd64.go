package mpmc

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease stores v into *p with release ordering: every load and store
// before it in program order is visible to a processor that sees v.
//
// On amd64 a plain aligned 8-byte store is atomic and the processor keeps
// stores in order and never moves a store before an earlier load (TSO), and
// the Go compiler keeps memory operations in program order around it; so a
// plain store is a release store. It costs a fraction of atomic.Store, which
// is an XCHG: a locked instruction that drains the store buffer. It is used
// only for words that, at that moment, no other participant may write (a
// claim's owner publishing or releasing its own slot, or its own claim
// record; see ring.go, invariant 4).
func storeRelease(p *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
}

// fence is a full memory barrier: any locked instruction is one on amd64.
// finish() (zerocopy.go) needs it between its release-store publish or
// release and its load of the asleep bit in the other side's position
// word: the processor may otherwise let that load run ahead of the
// buffered store (store-to-load reordering), and then the finisher sees no
// sleeper while the sleeper's retry still sees the slot unchanged, a
// wake-up missed (model/README.md, m7). The word is on the caller's stack,
// so the barrier contends with nothing.
func fence() {
	var x atomic.Uint32
	x.Add(1)
}

// plainIsRelease is true where a plain aligned store is a release store.
const plainIsRelease = true
