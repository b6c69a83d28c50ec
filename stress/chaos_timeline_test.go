package main

import (
	"testing"
	"time"

	"github.com/shmq/mpmc/stress/internal/verify"
)

func TestTimelineGaps(t *testing.T) {
	base := int64(5e9)
	tl := newTimeline(base, time.Second)
	at := func(ms ...int) []verify.Record {
		rs := make([]verify.Record, len(ms))
		for i, m := range ms {
			rs[i].At = base + int64(m)*int64(time.Millisecond) + 123
		}
		return rs
	}
	var ms []int
	for m := 0; m < 1000; m++ {
		if (m < 100 || m >= 400) && (m < 700 || m >= 750) && m != 200 {
			ms = append(ms, m)
		}
	}
	tl.mark(at(ms...))
	tl.mark([]verify.Record{{At: base - 1}, {At: base + int64(time.Hour)}}) // outside: ignored
	longest, longer := tl.gaps(1000, 2, 60*time.Millisecond)
	// Gaps: [100,400) is 300 ms, [700,750) 50 ms.
	if len(longest) != 2 || longest[0] != (gap{100, 300}) || longest[1] != (gap{700, 50}) || longer != 1 {
		t.Fatalf("gaps %v, %d longer", longest, longer)
	}
	// A gap running to the end counts up to the end.
	longest, _ = tl.gaps(1200, 1, time.Second)
	if longest[0] != (gap{100, 300}) {
		t.Fatalf("gaps %v", longest)
	}
	empty := newTimeline(base, time.Second)
	if longest, longer := empty.gaps(500, 3, 100*time.Millisecond); len(longest) != 1 || longest[0] != (gap{0, 500}) || longer != 1 {
		t.Fatalf("empty timeline: %v %d", longest, longer)
	}
}
