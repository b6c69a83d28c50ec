package main

import (
	"time"
	_ "unsafe" // for go:linkname
)

// nanotime is the runtime's CLOCK_MONOTONIC reading in nanoseconds, read
// through the vDSO (no system call). Unlike the monotonic part of time.Time,
// which counts from the start of the process, it is comparable between
// processes of one machine.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// busyWait spins on the clock, without yielding or sleeping, for d.
func busyWait(d time.Duration) {
	if d <= 0 {
		return
	}
	end := nanotime() + int64(d)
	for nanotime() < end {
	}
}
