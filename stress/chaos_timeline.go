package main

// The delivery timeline of a chaos run: which milliseconds, counted from the
// go signal, saw at least one message delivered. It is built from the
// consumers' own receive times (recorded in their logs), so stalls are
// measured the same however late the parent drains the logs.

import (
	"sort"
	"time"

	"github.com/shmq/mpmc/stress/internal/verify"
)

// timeline is a bitmap of milliseconds with a delivery.
type timeline struct {
	base int64 // CLOCK_MONOTONIC nanoseconds of the go signal
	bits []uint64
}

// newTimeline covers span from base.
func newTimeline(base int64, span time.Duration) *timeline {
	ms := int(span/time.Millisecond) + 1
	return &timeline{base: base, bits: make([]uint64, (ms+63)/64)}
}

// mark records the receive times of rs; times outside the span are ignored.
func (t *timeline) mark(rs []verify.Record) {
	for _, r := range rs {
		if r.At < t.base {
			continue
		}
		ms := uint64(r.At-t.base) / uint64(time.Millisecond)
		if w := ms / 64; w < uint64(len(t.bits)) {
			t.bits[w] |= 1 << (ms % 64)
		}
	}
}

// gap is a run of milliseconds without any delivery.
type gap struct {
	from, length int // milliseconds since the go signal
}

// gaps returns the runs of milliseconds in [0, end) without a delivery:
// the longest (at most keep of them, longest first), and how many are
// longer than over.
func (t *timeline) gaps(end int, keep int, over time.Duration) (longest []gap, longer int) {
	end = min(end, 64*len(t.bits))
	start := -1
	add := func(g gap) {
		if time.Duration(g.length)*time.Millisecond > over {
			longer++
		}
		longest = append(longest, g)
		sort.Slice(longest, func(i, j int) bool { return longest[i].length > longest[j].length })
		if len(longest) > keep {
			longest = longest[:keep]
		}
	}
	for ms := 0; ms < end; ms++ {
		set := t.bits[ms/64]&(1<<(ms%64)) != 0
		switch {
		case !set && start < 0:
			start = ms
		case set && start >= 0:
			add(gap{start, ms - start})
			start = -1
		}
	}
	if start >= 0 {
		add(gap{start, end - start})
	}
	return longest, longer
}
