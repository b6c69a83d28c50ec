package mpmc

// Issue 14, item 5: a participant is its open file description. A process
// the description was passed to (here through exec's ExtraFiles, as a fork
// without exec would inherit it) keeps the participant alive after the
// process that joined is gone; Inspect says so (HeldElsewhere).

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const childOutEnv = "MPMC_TEST_OUT" // where pass-handle sends hold-fd's stdout and stderr

func init() {
	// pass-handle joins the queue at path, starts a hold-fd grandchild
	// that inherits the handle's descriptor (the same open file
	// description, and so the participant's lock) and its own stdin,
	// prints "<grandchild pid> <participant index>" and exits without
	// closing the handle.
	childRoles["pass-handle"] = func(path string) int {
		q, err := Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			return 1
		}
		out, err := os.OpenFile(os.Getenv(childOutEnv), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		g := exec.Command(exe)
		g.Env = append(os.Environ(), childRoleEnv+"=hold-fd")
		g.Stdin, g.Stdout, g.Stderr = os.Stdin, out, out
		g.ExtraFiles = []*os.File{q.seg.f}
		if err := g.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start grandchild:", err)
			return 1
		}
		fmt.Printf("%d %d", g.Process.Pid, q.self)
		return 0 // the handle is never closed: this process just ends
	}
	// hold-fd holds what it inherited until its stdin ends (a minute at
	// most).
	childRoles["hold-fd"] = func(string) int {
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, os.Stdin)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintln(os.Stderr, "stdin:", err)
				return 1
			}
			return 0
		case <-time.After(time.Minute):
			fmt.Fprintln(os.Stderr, "hold-fd: not released within a minute")
			return 1
		}
	}
}

func TestParticipantHeldElsewhere(t *testing.T) {
	q, p := newTestQueue(t, 4, 16)
	// The grandchild is orphaned when its parent exits: as a subreaper,
	// this process inherits it and can reap it and read its exit status.
	require.NoError(t, unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })

	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() }) // releases the grandchild, whatever happens
	gOut := filepath.Join(t.TempDir(), "grandchild.out")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exe, err := os.Executable()
	require.NoError(t, err)
	c := exec.CommandContext(ctx, exe)
	c.Env = append(os.Environ(), childRoleEnv+"=pass-handle", childPathEnv+"="+p, childOutEnv+"="+gOut, "GORACE=atexit_sleep_ms=0")
	var stdout, stderr strings.Builder
	c.Stdin, c.Stdout, c.Stderr = r, &stdout, &stderr
	c.WaitDelay = 5 * time.Second
	require.NoError(t, c.Run(), "pass-handle: stderr:\n%s", stderr.String())
	r.Close()
	require.Empty(t, stderr.String())
	var gpid, index int
	_, err = fmt.Sscanf(stdout.String(), "%d %d", &gpid, &index)
	require.NoError(t, err, "pass-handle said %q", stdout.String())
	g, err := os.FindProcess(gpid)
	require.NoError(t, err)
	type waited struct {
		st  *os.ProcessState
		err error
	}
	gdone := make(chan waited, 1)
	go func() {
		st, err := g.Wait()
		gdone <- waited{st, err}
	}()
	t.Cleanup(func() { g.Kill() })

	entry := func() (Participant, bool) {
		info, err := Inspect(p)
		require.NoError(t, err)
		for _, pt := range info.Participants {
			if pt.Index == 0 {
				assert.True(t, pt.Alive, "our own handle")
				assert.False(t, pt.HeldElsewhere, "our own handle is held by its own process")
			}
			if pt.Index == index {
				return pt, true
			}
		}
		return Participant{}, false
	}
	pt, ok := entry()
	require.True(t, ok, "entry %d is listed", index)
	assert.Equal(t, c.Process.Pid, pt.Pid, "the entry names the process that joined, now gone")
	assert.True(t, pt.Alive, "the grandchild holds the open file description, and so the lock")
	assert.True(t, pt.HeldElsewhere, "the registered process is gone, the lock is held elsewhere")
	assert.False(t, pt.Joining)

	require.NoError(t, w.Close()) // the grandchild exits
	select {
	case gw := <-gdone:
		require.NoError(t, gw.err, "wait for the grandchild %d (reparented to this process)", gpid)
		out, _ := os.ReadFile(gOut)
		require.True(t, gw.st.Success(), "grandchild: %v; output:\n%s", gw.st, out)
		require.Empty(t, string(out), "grandchild output")
	case <-time.After(30 * time.Second):
		t.Fatal("the grandchild did not exit")
	}
	pt, ok = entry()
	require.True(t, ok, "a dead entry stays listed until reclaimed")
	assert.False(t, pt.Alive, "the last holder of the open file description is gone")
	assert.False(t, pt.HeldElsewhere)
	// The next joiner reclaims the entry.
	q2 := openTestQueue(t, p)
	assert.Equal(t, uint64(1), q2.Stats().ParticipantsReclaimed)
	_ = q
}
