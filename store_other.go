//go:build !amd64

package mpmc

import "sync/atomic"

// storeRelease stores v into *p with (at least) release ordering. Outside
// amd64 a plain store gives no such ordering, so this is atomic.Store.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }

// fence is a full memory barrier; see store_amd64.go. Here storeRelease is
// already sequentially consistent, so it is needed only for clarity.
func fence() {
	var x atomic.Uint32
	x.Add(1)
}

// plainIsRelease is true where a plain aligned store is a release store.
const plainIsRelease = false
