package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A small Bench run: both kinds of run go end to end, every message is
// consumed (a run that loses one would wait for it until its timeout), the
// report has a line per run and the medians, and the queues it created are
// gone.
func TestBenchSmall(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Bench(context.Background(), BenchConfig{Messages: 2000, Producers: 2, Reps: 2, Size: 64, Window: 64, Batch: 64}, &out, &errOut)
	require.Equal(t, ExitOK, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2+2*2+1, out.String())
	runLine := regexp.MustCompile(`^rep [12] (bridged|direct)\s+[0-9]+ msg/s end to end`)
	kinds := map[string]int{}
	for _, l := range lines[2:6] {
		m := runLine.FindStringSubmatch(l)
		require.NotNil(t, m, l)
		kinds[m[1]]++
	}
	assert.Equal(t, map[string]int{"bridged": 2, "direct": 2}, kinds)
	assert.Regexp(t, `^OK: bench, 2000 msgs x 2 reps: bridged A->NATS->B median [0-9]+ msg/s`, lines[6])
	left, err := os.ReadDir("/dev/shm")
	require.NoError(t, err)
	for _, e := range left {
		assert.NotContains(t, e.Name(), fmt.Sprintf("mpmc-bridge-bench-%d-", os.Getpid()), "a queue the bench created was left behind")
	}
}

// Bad workloads are refused before anything starts.
func TestBenchRefusesBadConfig(t *testing.T) {
	var out bytes.Buffer
	code := Bench(context.Background(), BenchConfig{Messages: 1, Producers: 2, Reps: 1, Size: 64}, &out, &out)
	assert.Equal(t, ExitFail, code)
	assert.Contains(t, out.String(), "FAIL: bench: need messages >= producers >= 1")
}
