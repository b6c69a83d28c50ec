//go:build mpmc_hooks

package mpmc

import "sync/atomic"

// hooksEnabled is true in builds with the mpmc_hooks tag, which the
// crash-point tests need (make test passes it).
const hooksEnabled = true

// testHook, when set, is called at each hookPoint.
var testHook atomic.Pointer[func(hookPoint)]

// hookUnpinned makes every call take the unpinned path (pin.go), for hooks
// that block: a pinned goroutine must not park.
var hookUnpinned atomic.Bool

func hook(p hookPoint) {
	if h := testHook.Load(); h != nil {
		(*h)(p)
	}
}

func hookForcesUnpinned() bool { return hookUnpinned.Load() }
