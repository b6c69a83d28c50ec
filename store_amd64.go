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
// claim's owner publishing or releasing its own slot; see slot.go).
func storeRelease(p *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
}
