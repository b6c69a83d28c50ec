package main

// End-to-end tests: they build the stress binary (with -race when the tests
// run with -race) and run it as a user would. Every segment they make is
// named after the test process and checked to be gone at the end.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmq/mpmc"

	"github.com/shmq/mpmc/stress/internal/proc"
)

// raceBuild is set by race_test.go when the tests run with -race.
var raceBuild bool

// bin is the stress binary under test.
var bin string

// shmPrefix starts the name of every segment these tests create, or that a
// run they start creates by default.
const shmPrefix = "mpmc-stress-"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	before := shmEntries()
	dir, err := os.MkdirTemp("", "stress-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "stress")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the stress binary: %v\n", err)
		return 2
	}
	code := m.Run()
	// Nothing may be left in /dev/shm by these tests. A new segment that
	// a live process uses belongs to a stress run going on beside the
	// tests (every process the tests started is gone by now): it is
	// neither ours to report nor to remove.
	for name := range shmEntries() {
		if !before[name] && !inUse(filepath.Join("/dev/shm", name)) {
			fmt.Fprintf(os.Stderr, "FAIL: the tests left /dev/shm/%s behind\n", name)
			os.Remove(filepath.Join("/dev/shm", name))
			code = 1
		}
	}
	return code
}

// inUse reports whether the queue segment at path has a live participant.
func inUse(path string) bool {
	info, err := mpmc.Inspect(path)
	if err != nil {
		return false
	}
	for _, p := range info.Participants {
		if p.Alive {
			return true
		}
	}
	return false
}

// shmEntries lists the stress tester's entries in /dev/shm.
func shmEntries() map[string]bool {
	ents, _ := os.ReadDir("/dev/shm")
	m := map[string]bool{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), shmPrefix) {
			m[e.Name()] = true
		}
	}
	return m
}

// shmPath returns a segment path unique to this test process and name, and
// removes whatever is there when the test ends.
func shmPath(t *testing.T, name string) string {
	p := fmt.Sprintf("/dev/shm/%stest-%d-%s", shmPrefix, os.Getpid(), name)
	os.Remove(p)
	t.Cleanup(func() { os.Remove(p) })
	return p
}

type result struct {
	stdout, stderr string
	code           int
}

// lastLine is the verdict line.
func (r result) lastLine() string {
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// start starts the binary; wait collects it.
func start(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0 halt_on_error=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out, &errb
}

func wait(t *testing.T, cmd *exec.Cmd, out, errb *bytes.Buffer) result {
	t.Helper()
	err := cmd.Wait()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%v: %v\n%v", cmd.Args, err, r)
	}
	return r
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd, out, errb := start(t, env, args...)
	return wait(t, cmd, out, errb)
}

func expect(t *testing.T, r result, code int, prefix string) {
	t.Helper()
	if r.code != code || !strings.HasPrefix(r.lastLine(), prefix) {
		t.Fatalf("want exit %d and a %q line, got:\n%v", code, prefix, r)
	}
}

// waitForSegment waits, for 30 s at most, until the run under test has
// created its segment at path.
func waitForSegment(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never created its segment")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists (%v)", path, err)
	}
}

func TestRunOK(t *testing.T) {
	path := shmPath(t, "ok")
	r := run(t, nil, "run", "-producers", "3", "-consumers", "3", "-messages", "60000", "-capacity", "64", "-path", path)
	expect(t, r, 0, "OK: 60000 messages, 3 producers, 3 consumers, exactly-once verified")
	for _, want := range []string{"throughput:", "latency:", "p99.9", "cpu:", "sleeps:", "children:   6 of 6 exited cleanly", "(removed)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "\r") {
		t.Errorf("progress bar output although stdout is not a terminal:\n%q", r.stdout)
	}
	gone(t, path)
}

func TestRunDefaultPathJSON(t *testing.T) {
	before := shmEntries()
	r := run(t, nil, "run", "-producers", "2", "-consumers", "3", "-messages", "30001", "-size", "100", "-json")
	if r.code != 0 {
		t.Fatalf("exit %d\n%v", r.code, r)
	}
	var rep Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	if rep.Line != "OK: 30001 messages, 2 producers, 3 consumers, exactly-once verified" || rep.ExitCode != 0 {
		t.Fatalf("verdict %q, exit code %d", rep.Line, rep.ExitCode)
	}
	if rep.Latency == nil || rep.Latency.Count != 30001 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P999 {
		t.Fatalf("latency: %+v", rep.Latency)
	}
	if len(rep.Children) != 5 || rep.Verified == nil || rep.Verified.Sent != 30001 || rep.MessagesPerSecond <= 0 || rep.MBPerSecond <= 0 {
		t.Fatalf("report: %+v", rep)
	}
	for _, c := range rep.Children {
		if c.ExitCode != 0 || c.Problem != "" {
			t.Fatalf("child: %+v", c)
		}
	}
	if !rep.Removed || !strings.HasPrefix(rep.Path, "/dev/shm/"+shmPrefix) {
		t.Fatalf("path %q removed %v", rep.Path, rep.Removed)
	}
	gone(t, rep.Path)
	for name := range shmEntries() {
		if !before[name] {
			t.Fatalf("/dev/shm/%s left behind", name)
		}
	}
}

func TestRunDuration(t *testing.T) {
	// The queue is shut down while producers are still sending: every
	// enqueue that succeeded must still be delivered.
	path := shmPath(t, "duration")
	r := run(t, nil, "run", "-producers", "3", "-consumers", "2", "-duration", "1s", "-capacity", "16", "-path", path)
	expect(t, r, 0, "OK: ")
	gone(t, path)
}

func TestNotAQueue(t *testing.T) {
	path := shmPath(t, "junk")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a queue "), 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "-path", path, "-messages", "1000"},
		{"consume", "-path", path},
		{"produce", "-path", path},
		{"inspect", "-path", path},
		{"shutdown", "-path", path},
	} {
		r := run(t, nil, args...)
		expect(t, r, 2, "ERROR: ")
		if !strings.Contains(r.lastLine(), path) {
			t.Errorf("%v: the ERROR line does not name the path: %s", args, r.lastLine())
		}
	}
	if b, err := os.ReadFile(path); err != nil || len(b) != 24000 {
		t.Fatalf("the file that is not a queue was touched: %d bytes, %v", len(b), err)
	}
}

func TestNoRoom(t *testing.T) {
	// A 1 MiB tmpfs of our own stands for a full /dev/shm.
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	path := filepath.Join(dir, "q")
	r := run(t, nil, "run", "-path", path, "-capacity", "65536", "-messages", "1000")
	expect(t, r, 2, "ERROR: no room in "+dir)
	if strings.Contains(r.stdout, "segment:") {
		t.Errorf("the report mentions a segment that was never created:\n%s", r.stdout)
	}
	expect(t, run(t, nil, "create", "-path", path, "-capacity", "65536"), 2, "ERROR: create: no room")
	gone(t, path)
}

func TestMissingPath(t *testing.T) {
	path := shmPath(t, "missing")
	for _, cmd := range []string{"inspect", "shutdown"} {
		expect(t, run(t, nil, cmd, "-path", path), 2, "ERROR: ")
	}
	gone(t, path)
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"run", "-size", "23"},
		{"run", "-capacity", "1000"},
		{"run", "-producers", "0"},
		{"run", "-producers", "100", "-consumers", "100"},
		{"run", "-messages", "0"},
		{"run", "-nosuchflag"},
		{"run", "extra"},
		{"frobnicate"},
		{"produce"},
		{"create", "-path", "/dev/shm/x", "-perm", "999"},
		{"chaos", "-duration", "0"},
		{"chaos", "-kill-every", "1ms"},
		{"chaos", "-producers", "0"},
		{"chaos", "-capacity", "3"},
		{"chaos", "-recovery-timeout", "-1s"},
		{"chaos", "extra"},
		{"clean", "-dir", "/nonexistent/dir", "-n"},
		{"clean", "-dir", "/nonexistent/dir"},
	} {
		expect(t, run(t, nil, args...), 2, "ERROR: ")
	}
}

func TestChildDies(t *testing.T) {
	for _, who := range []string{"consumer:1:2000", "producer:2:3000"} {
		t.Run(strings.ReplaceAll(who, ":", "_"), func(t *testing.T) {
			path := shmPath(t, "dies")
			r := run(t, []string{proc.TestExitEnv + "=" + who}, "run", "-producers", "3", "-consumers", "3", "-messages", "300000", "-path", path)
			expect(t, r, 2, "ERROR: ")
			role, id, _ := strings.Cut(who, ":")
			id, _, _ = strings.Cut(id, ":")
			if !strings.Contains(r.lastLine(), role+" "+id) || !strings.Contains(r.lastLine(), "exit status 3") || !strings.Contains(r.lastLine(), "dying on purpose") {
				t.Fatalf("the ERROR line does not say which child died and why:\n%v", r)
			}
			if !strings.Contains(r.stderr, "dying on purpose") {
				t.Fatalf("the child's stderr is not surfaced:\n%v", r)
			}
			gone(t, path)
		})
	}
}

func TestTimeoutKillsEverything(t *testing.T) {
	path := shmPath(t, "timeout")
	begin := time.Now()
	r := run(t, nil, "run", "-producers", "2", "-consumers", "2", "-messages", "4000000000", "-timeout", "2s", "-path", path)
	expect(t, r, 1, "FAIL: run did not finish within -timeout 2s")
	if el := time.Since(begin); el > 30*time.Second {
		t.Fatalf("took %v to give up", el)
	}
	gone(t, path)
}

func TestInterrupt(t *testing.T) {
	path := shmPath(t, "interrupt")
	cmd, out, errb := start(t, nil, "run", "-producers", "2", "-consumers", "2", "-duration", "2m", "-path", path)
	// Wait until the run is under way, then press Ctrl-C.
	waitForSegment(t, path)
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	r := wait(t, cmd, out, errb)
	expect(t, r, 0, "OK: ")
	if !strings.Contains(r.stdout, "stopped:    early, by interrupt") {
		t.Fatalf("the report does not say the run was interrupted:\n%v", r)
	}
	gone(t, path)
}

func TestStandaloneCommands(t *testing.T) {
	path := shmPath(t, "manual")
	expect(t, run(t, nil, "create", "-path", path, "-capacity", "128", "-size", "80"), 0, "OK: created "+path)
	expect(t, run(t, nil, "create", "-path", path), 2, "ERROR: ")

	cons, cout, cerr := start(t, nil, "consume", "-path", path)
	r := run(t, nil, "produce", "-path", path, "-id", "7", "-messages", "5000", "-size", "80")
	expect(t, r, 0, "OK: produced 5000 messages as producer 7")
	r = run(t, nil, "produce", "-path", path, "-id", "8", "-messages", "3000", "-size", "30", "-shutdown")
	expect(t, r, 0, "OK: produced 3000 messages as producer 8")
	r = wait(t, cons, cout, cerr)
	expect(t, r, 0, "OK: consumed 8000 messages from 2 producers")
	for _, want := range []string{"producer 7: 5000 messages, seq 0..4999, 0 skipped over, 0 not in increasing order", "stopped by shutdown", "latency: p50"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("consume output lacks %q:\n%s", want, r.stdout)
		}
	}

	// A producer after Shutdown stops at once.
	expect(t, run(t, nil, "produce", "-path", path, "-messages", "10"), 0, "OK: produced 0 messages")

	r = run(t, nil, "inspect", "-path", path)
	expect(t, r, 0, "OK: "+path+" is a queue segment")
	for _, want := range []string{"capacity 128 slots x 80 bytes", "enqueue 8000, dequeue 8000, length 0, shut down: yes", "participants: 0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = run(t, nil, "inspect", "-path", path, "-json")
	var info struct {
		Capacity int
		Stats    struct{ EnqueuePos uint64 }
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.Capacity != 128 || info.Stats.EnqueuePos != 8000 {
		t.Fatalf("inspect -json: %v %+v\n%s", err, info, r.stdout)
	}

	// consume -messages stops by count, without shutting anything down.
	path2 := shmPath(t, "manual2")
	prod, pout, perr := start(t, nil, "produce", "-path", path2, "-messages", "2000")
	r = run(t, nil, "consume", "-path", path2, "-messages", "1500")
	expect(t, r, 0, "OK: consumed 1500 messages from 1 producers")
	r = run(t, nil, "consume", "-path", path2, "-messages", "500", "-duration", "20s")
	expect(t, r, 0, "OK: consumed 500 messages from 1 producers")
	expect(t, wait(t, prod, pout, perr), 0, "OK: produced 2000 messages")
}

func TestInspectShowsLiveParticipants(t *testing.T) {
	path := shmPath(t, "live")
	expect(t, run(t, nil, "create", "-path", path), 0, "OK: ")
	cons, cout, cerr := start(t, nil, "consume", "-path", path)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := run(t, nil, "inspect", "-path", path)
		// A participant is listed as soon as it holds its lock; its pid
		// is written just after.
		if strings.Contains(r.stdout, "participants: 1") && strings.Contains(r.stdout, fmt.Sprintf(" %d ", cons.Process.Pid)) {
			if !strings.Contains(r.stdout, "yes") {
				t.Fatalf("the consumer is not listed as alive:\n%s", r.stdout)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer never showed up:\n%s", r.stdout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect(t, run(t, nil, "shutdown", "-path", path), 0, "OK: ")
	expect(t, wait(t, cons, cout, cerr), 0, "OK: consumed 0 messages")
}
