package main

import (
	"os"
	"strings"
	"testing"
)

// TestRunBackings: stress run with each -backing ends OK, and leaves no
// System V segment or lock file behind.
func TestRunBackings(t *testing.T) {
	before := sysvSegments(t)
	for _, b := range []string{"memfd", "sysv"} {
		t.Run(b, func(t *testing.T) {
			r := run(t, nil, "run", "-backing", b, "-producers", "2", "-consumers", "2", "-messages", "20000", "-capacity", "64")
			expect(t, r, 0, "OK: 20000 messages, 2 producers, 2 consumers, exactly-once verified")
			if !strings.Contains(r.stdout, "(removed)") {
				t.Errorf("segment not reported removed:\n%s", r.stdout)
			}
		})
	}
	if after := sysvSegments(t); after != before {
		t.Errorf("System V segments before the runs:\n%s\nafter:\n%s", before, after)
	}
	ents, _ := os.ReadDir("/dev/shm")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "mpmc-sysv-") && !strings.Contains(before, strings.TrimSuffix(strings.TrimPrefix(e.Name(), "mpmc-sysv-"), ".lock")) {
			t.Errorf("lock file /dev/shm/%s left behind", e.Name())
		}
	}
	r := run(t, nil, "run", "-backing", "tape", "-messages", "10")
	if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "-backing") {
		t.Errorf("a bad -backing: %v", r)
	}
}

func sysvSegments(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Skipf("no System V shared memory here: %v", err)
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			keys = append(keys, f[0])
		}
	}
	return strings.Join(keys, "\n")
}
