package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var readersRE = regexp.MustCompile(`by (\d+) readers \((\d+) Go, (\d+) C`)

// run runs the example's binary with env added and returns its output; it
// must exit 0, write nothing to stderr and end with an OK line, which it
// returns with the numbers of Go and C readers it names.
func run(t *testing.T, bin string, env ...string) (out, last string, goN, cN int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(cmd.Environ(), append([]string{"GORACE=atexit_sleep_ms=0"}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out = strings.TrimSpace(stdout.String())
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("eventloop: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	lines := strings.Split(out, "\n")
	last = lines[len(lines)-1]
	if !strings.HasPrefix(last, "OK") {
		t.Fatalf("last line %q, want OK...\n%s", last, out)
	}
	m := readersRE.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("the OK line does not say which readers took part: %q", last)
	}
	goN, _ = strconv.Atoi(m[2])
	cN, _ = strconv.Atoi(m[3])
	return out, last, goN, cN
}

// TestEventloop builds the example and runs it as `go run` would: it must
// exit 0 with a last line starting with OK, the Go readers and, when there
// is a C compiler, the C readers having taken part.
func TestEventloop(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "eventloop")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, ccErr := exec.LookPath("cc")
	if ccErr != nil && os.Getenv(requireCEnv) == "1" {
		t.Fatalf("%s=1 but there is no C compiler: %v", requireCEnv, ccErr)
	}
	var env []string
	if ccErr == nil {
		env = append(env, requireCEnv+"=1") // the writer fails if the C reader cannot take part
	}
	out, _, goN, cN := run(t, bin, env...)
	t.Log(out)
	if goN != goReaders {
		t.Errorf("%d Go readers took part, want %d", goN, goReaders)
	}
	t.Run("C readers", func(t *testing.T) {
		if ccErr != nil {
			t.Skipf("no C compiler (cc) in PATH, so the example ran with Go readers only (`make interop` installs gcc): %v", ccErr)
		}
		if cN != cReaders {
			t.Fatalf("%d C readers took part, want %d", cN, cReaders)
		}
	})

	// Without a compiler the example still runs, with the Go readers only,
	// and says so.
	t.Run("without cc", func(t *testing.T) {
		_, last, goN, cN := run(t, bin, "PATH="+t.TempDir(), requireCEnv+"=")
		if goN != goReaders || cN != 0 || !strings.Contains(last, "no C compiler") {
			t.Fatalf("without cc: %q, want %d Go readers, 0 C, and the reason", last, goReaders)
		}
	})
}
