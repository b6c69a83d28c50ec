//go:build !amd64

package mpmc

import "sync/atomic"

// storeRelease stores v into *p with (at least) release ordering. Outside
// amd64 a plain store gives no such ordering, so this is atomic.Store.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }
