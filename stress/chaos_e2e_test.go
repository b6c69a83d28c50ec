package main

// End-to-end tests of `stress chaos`, `stress clean` and what `stress
// inspect` shows of dead participants.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmq/mpmc/stress/internal/proc"
)

// okChaos matches the OK line of a chaos run.
var okChaos = regexp.MustCompile(`^OK: chaos (\S+), (\d+) kills \((\d+) producers, (\d+) consumers\), (\d+) messages delivered, (\d+) lost to killed consumers, worst stall (\S+)$`)

func TestChaosOK(t *testing.T) {
	path := shmPath(t, "chaos")
	r := run(t, nil, "chaos", "-duration", "5s", "-kill-every", "300ms", "-path", path)
	t.Logf("report:\n%s", r.stdout)
	expect(t, r, 0, "OK: chaos 5s, ")
	m := okChaos.FindStringSubmatch(r.lastLine())
	if m == nil {
		t.Fatalf("the OK line does not have the expected form:\n%v", r)
	}
	kills, _ := strconv.Atoi(m[2])
	kp, _ := strconv.Atoi(m[3])
	kc, _ := strconv.Atoi(m[4])
	delivered, _ := strconv.Atoi(m[5])
	lost, _ := strconv.Atoi(m[6])
	// 5 s at one kill every 150-450 ms.
	if kills < 8 || kills > 40 || kp+kc != kills || delivered == 0 || lost > kc {
		t.Fatalf("implausible counts in %q", r.lastLine())
	}
	for _, want := range []string{"kills:", "delivered:", "lost:", "duplicates: 0 (bound 0", "recovery:", "stalls:", "children:", "(removed)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stdout)
		}
	}
	gone(t, path)
}

func TestChaosRedeliverJSON(t *testing.T) {
	path := shmPath(t, "chaos-redeliver")
	r := run(t, nil, "chaos", "-duration", "5s", "-kill-every", "300ms", "-redeliver", "-json", "-path", path)
	var rep ChaosReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%v", err, r)
	}
	if r.code != 0 || rep.ExitCode != 0 || !okChaos.MatchString(rep.Line) {
		t.Fatalf("verdict %q, exit %d\n%v", rep.Line, r.code, r)
	}
	if !rep.Config.Redeliver || len(rep.Kills) == 0 || rep.Delivered == 0 || rep.MessagesPerSecond <= 0 || rep.Verified == nil || !rep.Removed {
		t.Fatalf("report: %+v", rep)
	}
	if rep.Duplicates.Bound != rep.Queue.Redelivered || rep.Duplicates.Seen > rep.Duplicates.Bound {
		t.Fatalf("duplicates %+v, redelivered %d", rep.Duplicates, rep.Queue.Redelivered)
	}
	if rep.WorstStall.Seconds <= 0 || rep.WorstStall.Seconds > rep.StallBoundSeconds {
		t.Fatalf("worst stall %+v, bound %v", rep.WorstStall, rep.StallBoundSeconds)
	}
	gone(t, path)
}

func TestChaosInterrupt(t *testing.T) {
	path := shmPath(t, "chaos-interrupt")
	cmd, out, errb := start(t, nil, "chaos", "-duration", "2m", "-kill-every", "200ms", "-path", path)
	waitForSegment(t, path)
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	r := wait(t, cmd, out, errb)
	expect(t, r, 0, "OK: chaos ")
	if !strings.Contains(r.stdout, "stopped:    early, by interrupt") || !strings.Contains(r.lastLine(), " of 2m0s,") {
		t.Fatalf("the report does not say the run was interrupted:\n%v", r)
	}
	gone(t, path)
}

func TestChaosChildFails(t *testing.T) {
	// A child that exits by itself (not killed) ends the run with ERROR,
	// and nothing is left behind.
	path := shmPath(t, "chaos-dies")
	r := run(t, []string{proc.TestExitEnv + "=consumer:1:2000"}, "chaos", "-duration", "20s", "-producers", "2", "-consumers", "2", "-path", path)
	expect(t, r, 2, "ERROR: consumer 1 ")
	if !strings.Contains(r.lastLine(), "exit status 3") || !strings.Contains(r.stdout, "evidence:   when consumer 1") {
		t.Fatalf("the report does not say which child failed, with the queue's state:\n%v", r)
	}
	gone(t, path)
}

func TestChaosTimeout(t *testing.T) {
	// A run that overruns -timeout FAILs with the queue's state, and
	// leaves nothing behind either.
	path := shmPath(t, "chaos-timeout")
	r := run(t, nil, "chaos", "-duration", "1m", "-timeout", "2s", "-producers", "2", "-consumers", "2", "-path", path)
	expect(t, r, 1, "FAIL: the run did not finish within -timeout 2s: queue len ")
	if !strings.Contains(r.stdout, "evidence:   at the timeout") || !strings.Contains(r.stdout, "participants: 5") {
		t.Fatalf("the report lacks the queue's state at the timeout:\n%v", r)
	}
	gone(t, path)
}

// startConsumerOn starts `stress consume` on path and waits until inspect
// lists it as a participant.
func startConsumerOn(t *testing.T, path string) *os.Process {
	t.Helper()
	cmd, _, _ := start(t, nil, "consume", "-path", path)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := run(t, nil, "inspect", "-path", path)
		if strings.Contains(r.stdout, fmt.Sprintf(" %d ", cmd.Process.Pid)) {
			return cmd.Process
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer never joined %s:\n%v", path, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClean(t *testing.T) {
	// A private directory, so that nothing of other tests or users is
	// touched.
	dir := t.TempDir()
	dead, live, junk := filepath.Join(dir, "dead"), filepath.Join(dir, "live"), filepath.Join(dir, "junk")
	p := startConsumerOn(t, dead) // creates it
	p.Kill()
	p.Wait()
	startConsumerOn(t, live)
	if err := os.WriteFile(junk, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}

	r := run(t, nil, "clean", "-dir", dir, "-n")
	expect(t, r, 0, "OK: 1 unused queue segments in "+dir+" (nothing removed: -n)")
	if !strings.Contains(r.stdout, "would remove "+dead+" (created by pid") || strings.Contains(r.stdout, live) {
		t.Fatalf("-n lists the wrong segments:\n%v", r)
	}
	if _, err := os.Stat(dead); err != nil {
		t.Fatalf("-n removed something: %v", err)
	}

	r = run(t, nil, "clean", "-dir", dir)
	expect(t, r, 0, "OK: removed 1 unused queue segments from "+dir)
	if !strings.Contains(r.stdout, "removed "+dead+"\n") {
		t.Fatalf("clean does not say what it removed:\n%v", r)
	}
	gone(t, dead)
	for _, keep := range []string{live, junk} {
		if _, err := os.Stat(keep); err != nil {
			t.Fatalf("clean removed %s: %v", keep, err)
		}
	}
	expect(t, run(t, nil, "shutdown", "-path", live), 0, "OK: ")
}

func TestInspectShowsDeadParticipants(t *testing.T) {
	// A producer of 16 MiB messages into a queue of two slots with no
	// consumer spends a good part of its time inside a claim (copying);
	// kill it at random moments until it dies holding one.
	path := shmPath(t, "dead")
	const size = "16777216"
	var r result
	for try := 0; ; try++ {
		os.Remove(path)
		expect(t, run(t, nil, "create", "-path", path, "-capacity", "2", "-size", size), 0, "OK: ")
		cmd, _, _ := start(t, nil, "produce", "-path", path, "-size", size, "-messages", "0")
		time.Sleep(time.Duration(10+try*7%90) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		r = run(t, nil, "inspect", "-path", path)
		expect(t, r, 0, "OK: ")
		// Killed before it joined, it leaves no participant.
		if !strings.Contains(r.stdout, "participants: 0") && !strings.Contains(r.stdout, "participants: 1 (1 dead without leaving, holding ") {
			t.Fatalf("the killed producer is not shown dead:\n%v", r)
		}
		if strings.Contains(r.stdout, "holding 1 claims") {
			break
		}
		if try == 60 {
			t.Skipf("never killed the producer inside a claim in %d tries", try+1)
		}
	}
	row := regexp.MustCompile(`(?m)^  0\s+\d+\s+no\s+1\s+2\s`)
	if !row.MatchString(r.stdout) || !strings.Contains(r.stdout, "recovery:     writes 0, reads 0, redelivered 0") {
		t.Fatalf("inspect does not show the dead participant's claim:\n%s", r.stdout)
	}
	// A newcomer recovers the claim when it opens the queue; inspect
	// shows the counter, and the dead entry reused.
	expect(t, run(t, nil, "consume", "-path", path, "-duration", "300ms"), 0, "OK: consumed ")
	r = run(t, nil, "inspect", "-path", path)
	if !strings.Contains(r.stdout, "recovery:     writes 1, reads 0, redelivered 0") || !strings.Contains(r.stdout, "participants reclaimed 1") {
		t.Fatalf("inspect does not show the recovery:\n%s", r.stdout)
	}
}
