//go:build mpmc_hooks

package mpmc

// Recovery from dead claimants. Deterministic crash points: a child process
// is SIGKILLed at one exact step of an operation (testHook), and the parent
// checks that the queue recovers and that the delivery guarantees hold; and
// sleepers that must notice such a death in time.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Deterministic crash points: a child process is SIGKILLed at one exact step
// of an operation (testHook), and the parent checks that the queue recovers
// and that the delivery guarantees hold.

const childCrashEnv = "MPMC_TEST_CRASH"

// runCrash runs a crash-* role: it performs one operation and is killed by
// SIGKILL when the operation reaches the hook point named in childCrashEnv.
// Returning at all is a failure.
func runCrash(role, path string) int {
	at, _ := strconv.Atoi(os.Getenv(childCrashEnv))
	setHook(func(p hookPoint) {
		if p == hookPoint(at) {
			// A raw system call: the hook may run in a pinned call
			// (pin.go), which must not enter the scheduler.
			unix.RawSyscall(unix.SYS_KILL, uintptr(os.Getpid()), uintptr(syscall.SIGKILL), 0)
			for {
			} // the signal is on its way
		}
	})
	var err error
	switch role {
	case "crash-create":
		_, err = Create(path, Config{Capacity: 4, SlotSize: 16})
	case "crash-open":
		_, err = Open(path)
	case "crash-enqueue", "crash-dequeue", "crash-enqueue-batch", "crash-dequeue-batch", "crash-reserve", "crash-take":
		var q *Queue
		if q, err = Open(path); err == nil {
			err = crashOperation(q, role)
		}
	default:
		err = fmt.Errorf("unknown role %s", role)
	}
	fmt.Fprintf(os.Stderr, "%s survived its crash point %d (err %v)\n", role, at, err)
	return 1
}

// crashOperation is the operation of a crash-* role that works on a queue.
// The zero-copy roles die holding their claim, with no hook.
func crashOperation(q *Queue, role string) error {
	buf := make([]byte, q.SlotSize())
	switch role {
	case "crash-enqueue":
		return q.TryEnqueue([]byte("never acknowledged"))
	case "crash-dequeue":
		_, err := q.TryDequeue(buf)
		return err
	case "crash-enqueue-batch":
		_, err := q.TryEnqueueBatch([][]byte{[]byte("b0"), []byte("b1"), []byte("b2")})
		return err
	case "crash-dequeue-batch":
		_, err := q.TryDequeueBatch([][]byte{buf, make([]byte, q.SlotSize()), make([]byte, q.SlotSize())}, make([]int, 3))
		return err
	case "crash-reserve":
		r, err := q.TryReserve()
		if err == nil {
			copy(r.Bytes(), "held")
			unix.RawSyscall(unix.SYS_KILL, uintptr(os.Getpid()), uintptr(syscall.SIGKILL), 0)
		}
		return err
	case "crash-take":
		_, err := q.TryTake()
		if err == nil {
			unix.RawSyscall(unix.SYS_KILL, uintptr(os.Getpid()), uintptr(syscall.SIGKILL), 0)
		}
		return err
	}
	return fmt.Errorf("unknown role %s", role)
}

// The crash-* roles exist in mpmc_hooks builds only.
func init() {
	for _, role := range strings.Fields("crash-create crash-open crash-enqueue crash-dequeue crash-enqueue-batch crash-dequeue-batch crash-reserve crash-take") {
		childRoles[role] = func(path string) int { return runCrash(role, path) }
	}
}

// crashChild runs a crash-* child to its death and checks that it died of
// SIGKILL, with nothing on stderr.
func crashChild(t *testing.T, role, path string, at hookPoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startChild(t, ctx, role, path, childCrashEnv+"="+strconv.Itoa(int(at)))
	select {
	case err := <-c.done:
		c.done <- err
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "child %s: stderr %s", c.name, c.stderr.String())
		ws := ee.Sys().(syscall.WaitStatus)
		require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL,
			"child %s did not die at its crash point: %v; stderr %s", c.name, err, c.stderr.String())
		require.Empty(t, c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("crash child %s still running", c.name)
	}
}

// recoveringHandle opens a handle that checks stalled claims quickly.
func recoveringHandle(t *testing.T, path string) *Queue {
	q := openTestQueue(t, path)
	q.SetRecoveryTimeout(20 * time.Millisecond)
	return q
}

func TestCrashProducer(t *testing.T) {
	for _, at := range []hookPoint{hookEnqueueClaimed, hookEnqueueMidCopy, hookEnqueueBeforePublish} {
		t.Run(fmt.Sprint("point=", at), func(t *testing.T) {
			q, p := newTestQueue(t, 4, 32)
			require.NoError(t, q.TryEnqueue([]byte("before")))
			crashChild(t, "crash-enqueue", p, at)

			info, err := Inspect(p)
			require.NoError(t, err)
			dead := 0
			for _, pt := range info.Participants {
				if !pt.Alive {
					dead++
					assert.Equal(t, 1, pt.Claims, "the dead producer's claim is attributed to it")
				}
			}
			require.Equal(t, 1, dead)

			// Traffic after the dead claim flows once it is recovered.
			require.NoError(t, q.TryEnqueue([]byte("after")))
			cons := recoveringHandle(t, p)
			assert.Equal(t, "before", dequeueString(t, cons))
			assert.Equal(t, "after", dequeueString(t, cons), "the dead claim is skipped, never delivered")
			_, err = cons.TryDequeue(make([]byte, 32))
			require.ErrorIs(t, err, ErrEmpty)
			st := cons.Stats()
			assert.Equal(t, uint64(1), st.RecoveredWrites)
			assert.Equal(t, uint64(1), st.SkippedSlots)
			// The ring keeps working for laps after.
			for i := range 20 {
				msg := []byte(strconv.Itoa(i))
				require.NoError(t, q.TryEnqueue(msg))
				assert.Equal(t, string(msg), dequeueString(t, cons))
			}
		})
	}
}

// crashQueue creates a queue of capacity 16-byte slots at a fresh path for
// a crash test, and closes it when the test ends.
func crashQueue(t *testing.T, capacity int, redeliver bool) (string, *Queue) {
	t.Helper()
	p := segPath(t)
	q, err := Create(p, Config{Capacity: capacity, SlotSize: 16, Redeliver: redeliver})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return p, q
}

// forConsumerCrashes runs body as a subtest for each Redeliver setting and
// each point a consumer may crash at, on a fresh queue at p of capacity
// 16-byte slots.
func forConsumerCrashes(t *testing.T, capacity int, body func(t *testing.T, p string, q *Queue, redeliver bool, at hookPoint)) {
	for _, redeliver := range []bool{false, true} {
		for _, at := range []hookPoint{hookDequeueTaken, hookDequeueCopied} {
			t.Run(fmt.Sprintf("redeliver=%v/point=%d", redeliver, at), func(t *testing.T) {
				p, q := crashQueue(t, capacity, redeliver)
				body(t, p, q, redeliver, at)
			})
		}
	}
}

func TestCrashConsumer(t *testing.T) {
	forConsumerCrashes(t, 2, func(t *testing.T, p string, q *Queue, redeliver bool, at hookPoint) {
		require.NoError(t, q.TryEnqueue([]byte("taken")))
		require.NoError(t, q.TryEnqueue([]byte("second")))
		crashChild(t, "crash-dequeue", p, at)

		cons := recoveringHandle(t, p)
		assert.Equal(t, "second", dequeueString(t, cons))
		// The dead consumer's slot blocks the producers a lap
		// later, until it is recovered.
		q.SetRecoveryTimeout(20 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, q.Enqueue(ctx, []byte("third")))
		var got []string
		for range 1 + boolInt(redeliver) {
			got = append(got, dequeueString(t, cons))
		}
		_, err := cons.TryDequeue(make([]byte, 16))
		require.ErrorIs(t, err, ErrEmpty)
		st := cons.Stats()
		assert.Equal(t, uint64(1), st.RecoveredReads)
		if redeliver {
			assert.ElementsMatch(t, []string{"taken", "third"}, got)
			assert.Equal(t, uint64(1), st.Redelivered)
		} else {
			assert.Equal(t, []string{"third"}, got)
			assert.Equal(t, uint64(0), st.Redelivered)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestRedeliverOnlyOnce(t *testing.T) {
	// A redelivered message whose second consumer dies too is dropped.
	p, q := crashQueue(t, 2, true)
	q.SetRecoveryTimeout(10 * time.Millisecond)
	require.NoError(t, q.TryEnqueue([]byte("unlucky")))
	crashChild(t, "crash-dequeue", p, hookDequeueTaken)
	q.recoverAll()
	assert.Equal(t, uint64(1), q.Stats().Redelivered)
	crashChild(t, "crash-dequeue", p, hookDequeueTaken)
	q.recoverAll()
	st := q.Stats()
	assert.Equal(t, uint64(2), st.RecoveredReads)
	assert.Equal(t, uint64(1), st.Redelivered, "redelivered at most once")
	_, err := q.TryDequeue(make([]byte, 16))
	require.ErrorIs(t, err, ErrEmpty)
}

func TestCrashWhileSleeping(t *testing.T) {
	q, p, _, sleeper := withSleeper(t)
	require.NoError(t, sleeper.cmd.Process.Kill())
	<-sleeper.done
	sleeper.done <- nil

	// Its waiter bit is stale: the next enqueue pays one wake-up at most,
	// and the queue works on.
	before := q.Stats().ConsumerWakeups
	for i := range 10 {
		require.NoError(t, q.TryEnqueue([]byte(strconv.Itoa(i))))
		assert.Equal(t, strconv.Itoa(i), dequeueString(t, q))
	}
	assert.LessOrEqual(t, q.Stats().ConsumerWakeups-before, uint64(1))

	// Its table entry is reclaimed by the next handle.
	info, err := Inspect(p)
	require.NoError(t, err)
	require.Len(t, info.Participants, 2)
	q2 := openTestQueue(t, p)
	assert.Equal(t, uint64(1), q2.Stats().ParticipantsReclaimed)
	info, err = Inspect(p)
	require.NoError(t, err)
	for _, pt := range info.Participants {
		assert.True(t, pt.Alive)
	}
}

func TestCrashWhileOpening(t *testing.T) {
	q, p := newTestQueue(t, 4, 16)
	crashChild(t, "crash-open", p, hookJoinLocked)
	q2 := openTestQueue(t, p)
	require.NoError(t, q2.TryEnqueue([]byte("ok")))
	assert.Equal(t, "ok", dequeueString(t, q))
}

func TestCrashWhileCreating(t *testing.T) {
	// A creator that dies leaves nothing at the path: the next Create
	// works, and Clean removes its temporary file.
	dir, err := os.MkdirTemp("/dev/shm", "mpmc-test-clean-")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "q")
	crashChild(t, "crash-create", p, hookCreateBeforeReady)
	_, err = os.Stat(p)
	require.ErrorIs(t, err, os.ErrNotExist)
	leftovers, err := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	require.NoError(t, err)
	require.Len(t, leftovers, 1)

	q, err := Create(p, Config{Capacity: 4, SlotSize: 16})
	require.NoError(t, err)
	removed, err := Clean(dir)
	require.NoError(t, err)
	assert.Empty(t, removed, "a young temporary file may belong to a live creator")
	defer func(g time.Duration) { tempGrace = g }(tempGrace)
	tempGrace = 0
	removed, err = Clean(dir)
	require.NoError(t, err)
	assert.Equal(t, leftovers, removed, "Clean removes the dead creator's file, not the live queue")
	require.NoError(t, q.Close())
	removed, err = Clean(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{p}, removed, "once unused, the queue goes too")
}

func TestCleanKeepsOthers(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "mpmc-test-clean-")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	other := filepath.Join(dir, "not-a-queue")
	require.NoError(t, os.WriteFile(other, []byte("keep me"), 0o600))
	q, err := Create(filepath.Join(dir, "live"), Config{Capacity: 2, SlotSize: 1})
	require.NoError(t, err)
	defer q.Close()
	removed, err := Clean(dir)
	require.NoError(t, err)
	assert.Empty(t, removed)
	_, err = os.Stat(other)
	require.NoError(t, err)
}

func TestRestartAfterAllDied(t *testing.T) {
	// Every participant dies, holding claims on both sides: the next Open
	// recovers the segment and the messages not taken are all there.
	p := segPath(t)
	q, err := Create(p, Config{Capacity: 8, SlotSize: 32})
	require.NoError(t, err)
	for _, m := range []string{"m0", "m1", "m2"} {
		require.NoError(t, q.TryEnqueue([]byte(m)))
	}
	require.NoError(t, q.Close())
	crashChild(t, "crash-dequeue", p, hookDequeueCopied)  // takes m0
	crashChild(t, "crash-enqueue", p, hookEnqueueMidCopy) // claims position 3
	crashChild(t, "crash-enqueue", p, hookEnqueueClaimed) // claims position 4
	info, err := Inspect(p)
	require.NoError(t, err)
	for _, pt := range info.Participants {
		assert.False(t, pt.Alive)
	}

	q = openTestQueue(t, p)
	st := q.Stats()
	assert.Equal(t, uint64(2), st.RecoveredWrites)
	assert.Equal(t, uint64(1), st.RecoveredReads)
	assert.Equal(t, "m1", dequeueString(t, q))
	assert.Equal(t, "m2", dequeueString(t, q))
	_, err = q.TryDequeue(make([]byte, 32))
	require.ErrorIs(t, err, ErrEmpty)
	for i := range 20 {
		require.NoError(t, q.TryEnqueue([]byte{byte(i)}))
		assert.Equal(t, string([]byte{byte(i)}), dequeueString(t, q))
	}
}

func TestSlowLiveOwnerIsWaitedFor(t *testing.T) {
	// A claim whose owner is alive (here: another handle of this process,
	// stopped at its hook) is never taken over, however long it takes.
	q, p := newTestQueue(t, 4, 16)
	cons := recoveringHandle(t, p)
	release := make(chan struct{})
	claimed := make(chan struct{})
	setBlockingHook(t, func(hp hookPoint) {
		if hp == hookEnqueueBeforePublish {
			close(claimed)
			<-release
		}
	})
	done := make(chan error, 1)
	go func() { done <- q.TryEnqueue([]byte("slow")) }()
	<-claimed
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := cons.Dequeue(ctx, make([]byte, 16))
	require.ErrorIs(t, err, context.DeadlineExceeded, "waited, did not skip the live claim")
	assert.Equal(t, uint64(0), cons.Stats().RecoveredWrites)
	close(release)
	require.NoError(t, <-done)
	testHook.Store(nil)
	assert.Equal(t, "slow", dequeueString(t, cons))
}

var _ = errors.Is

func setHook(f func(hookPoint)) { testHook.Store(&f) }

// setBlockingHook sets a hook that may block or call into the queue: calls
// take the unpinned path while it is set (pin.go).
func setBlockingHook(t *testing.T, f func(hookPoint)) {
	hookUnpinned.Store(true)
	setHook(f)
	t.Cleanup(func() {
		testHook.Store(nil)
		hookUnpinned.Store(false)
	})
}

func TestOpenOfRemovedSegment(t *testing.T) {
	// The segment is removed (as by Clean) while Open is joining: Open
	// fails rather than join a file nobody else can find.
	_, p := newTestQueue(t, 4, 16)
	setBlockingHook(t, func(hp hookPoint) {
		if hp == hookJoinLocked {
			testHook.Store(nil)
			require.NoError(t, os.Remove(p))
		}
	})
	_, err := Open(p)
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "removed while opening")
}

func TestSpinOnlyRecovers(t *testing.T) {
	// A consumer that never sleeps (SetSpin(-1)) still notices a dead
	// producer's claim at the head, and goes on.
	q, p := newTestQueue(t, 4, 32)
	crashChild(t, "crash-enqueue", p, hookEnqueueBeforePublish)
	require.NoError(t, q.TryEnqueue([]byte("after")))
	cons := recoveringHandle(t, p)
	cons.SetSpin(-1)
	assert.Equal(t, "after", dequeueString(t, cons))
	assert.Equal(t, uint64(1), cons.Stats().RecoveredWrites)
}

func TestSkippedBehindHeadIsRecovered(t *testing.T) {
	// A consumer died between moving the head past a skipped slot and
	// freeing it: the slot sits behind the head, where producers meet it
	// a lap later. The producers' stall check frees it, and so does Open.
	for _, via := range []string{"stall", "open"} {
		t.Run(via, func(t *testing.T) {
			q, p := newTestQueue(t, 4, 8)
			q.SetRecoveryTimeout(10 * time.Millisecond)
			// Slot 0 skipped for position 0, head already at 1.
			q.ring.slot(0).seq.Store(seqWord(1, slotSkipped))
			q.ring.pos[producers].Store(1)
			q.ring.pos[consumers].Store(1)
			for i := range 3 {
				require.NoError(t, q.TryEnqueue([]byte{byte(i)}))
			}
			if via == "open" {
				q2 := openTestQueue(t, p)
				assert.Equal(t, uint64(1), q2.Stats().SkippedSlots)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, q.Enqueue(ctx, []byte{3}), "position 4 (slot 0) is usable again")
			for i := range 4 {
				assert.Equal(t, string([]byte{byte(i)}), dequeueString(t, q))
			}
			assert.Equal(t, uint64(1), q.Stats().SkippedSlots)
		})
	}
}

func TestSweepDoesNotReuseDeadVerdicts(t *testing.T) {
	// Open's sweep must not judge a claim by an earlier "dead" verdict
	// on the same entry: the entry may have been taken by a live process
	// since. Here a live handle holds entry 1; a claim naming entry 1 that
	// the sweep meets must be left alone, even if an earlier claim of the
	// same entry was judged dead.
	q, p := newTestQueue(t, 8, 8)
	live := openTestQueue(t, p) // entry 1
	require.Equal(t, 1, live.self)
	// Position 0 claimed by the live handle, not yet published.
	live.ring.record(live.self, pinnedRecords).Store(recordFor(producers, 0, 1))
	q.ring.pos[producers].Store(1)
	alive := map[int]bool{}
	c := q.ring.slot(0).seq.Load()
	ok, _ := q.ring.recoverClaim(claim{producers, 0, c}, nil, alive)
	assert.False(t, ok, "a live owner's claim is not recovered")
	assert.Equal(t, map[int]bool{1: true}, alive, "a cached verdict is only ever alive")
	// Once the live handle's record is gone (it published, say), the
	// same word may be recovered: the CAS decides.
	live.ring.record(live.self, pinnedRecords).Store(0)
	ok, _ = q.ring.recoverClaim(claim{producers, 0, c}, nil, alive)
	assert.True(t, ok)
}

func TestRedeliverAfterSweep(t *testing.T) {
	// A dead consumer held two messages of a full queue, in slots 3 and 0
	// (positions 3 and 4). Open's sweep meets slot 0 first, but enqueueing
	// its message again needs slot 3, freed later in the sweep: so the
	// sweep frees every slot before enqueueing any message again, and both
	// are redelivered.
	p := segPath(t)
	q, err := Create(p, Config{Capacity: 4, SlotSize: 8, Redeliver: true})
	require.NoError(t, err)
	for _, m := range []string{"a", "b", "c", "d"} {
		require.NoError(t, q.TryEnqueue([]byte(m)))
	}
	for _, m := range []string{"a", "b", "c"} {
		assert.Equal(t, m, dequeueString(t, q))
	}
	for _, m := range []string{"e", "f", "g"} {
		require.NoError(t, q.TryEnqueue([]byte(m)))
	}
	// Positions 3 ("d", slot 3) and 4 ("e", slot 0) taken by a consumer
	// that died: its claim record is in entry 127, which nobody holds.
	q.ring.record(maxParticipants-1, pinnedRecords).Store(recordFor(consumers, 3, 2))
	q.ring.pos[consumers].Store(5)
	require.NoError(t, q.Close())

	start := time.Now()
	q2 := openTestQueue(t, p)
	assert.Less(t, time.Since(start), 100*time.Millisecond, "no waiting for room")
	st := q2.Stats()
	assert.Equal(t, uint64(2), st.RecoveredReads)
	assert.Equal(t, uint64(2), st.Redelivered)
	var got []string
	for range 4 {
		got = append(got, dequeueString(t, q2))
	}
	assert.ElementsMatch(t, []string{"d", "e", "f", "g"}, got)
}

func TestClaimIsAttributed(t *testing.T) {
	// A claim is recorded in its owner's entry: Inspect counts it.
	q, p := newTestQueue(t, 4, 8)
	setBlockingHook(t, func(hp hookPoint) {
		if hp == hookEnqueueBeforePublish {
			info, err := Inspect(p)
			assert.NoError(t, err)
			if assert.Len(t, info.Participants, 1) {
				assert.Equal(t, 1, info.Participants[0].Claims)
			}
		}
	})
	require.NoError(t, q.TryEnqueue([]byte("c")))
	info, err := Inspect(p)
	require.NoError(t, err)
	assert.Equal(t, 0, info.Participants[0].Claims, "the record is cleared after publishing")
}

func TestShutdownDuringClaim(t *testing.T) {
	// Shutdown lands between a producer's look at the flag and its claim:
	// the producer gives the claim up (ErrClosed), no message is
	// published, and Len does not count the given-up position.
	q, p := newTestQueue(t, 4, 8)
	other := openTestQueue(t, p)
	require.NoError(t, q.TryEnqueue([]byte("first")))
	setBlockingHook(t, func(hp hookPoint) {
		if hp == hookEnqueueClaimed {
			testHook.Store(nil)
			require.NoError(t, other.Shutdown())
		}
	})
	require.ErrorIs(t, q.TryEnqueue([]byte("second")), ErrClosed)
	assert.Equal(t, 1, q.Len())
	assert.Equal(t, uint64(2), q.Stats().EnqueuePos)
	buf := make([]byte, 8)
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "first", string(buf[:n]))
	assert.Equal(t, 0, q.Len())
	_, err = q.TryDequeue(buf)
	require.ErrorIs(t, err, ErrClosed)
}

func TestCrashBatchProducer(t *testing.T) {
	// A producer killed holding a claim of three positions: published ones
	// are delivered, the others recovered as skipped, in one sweep of the
	// consumers' stall checks.
	for _, tc := range []struct {
		at   hookPoint
		want []string
	}{
		{hookEnqueueClaimed, nil},
		{hookBatchFirstPublished, []string{"b0"}},
	} {
		t.Run(fmt.Sprint("point=", tc.at), func(t *testing.T) {
			q, p := newTestQueue(t, 8, 32)
			require.NoError(t, q.TryEnqueue([]byte("before")))
			crashChild(t, "crash-enqueue-batch", p, tc.at)
			info, err := Inspect(p)
			require.NoError(t, err)
			for _, pt := range info.Participants {
				if !pt.Alive {
					assert.Equal(t, 1, pt.Claims, "one record covers the batch")
				}
			}
			require.NoError(t, q.TryEnqueue([]byte("after")))
			cons := recoveringHandle(t, p)
			want := append(append([]string{"before"}, tc.want...), "after")
			for _, m := range want {
				assert.Equal(t, m, dequeueString(t, cons))
			}
			_, err = cons.TryDequeue(make([]byte, 32))
			require.ErrorIs(t, err, ErrEmpty)
			st := cons.Stats()
			assert.Equal(t, uint64(3-len(tc.want)), st.RecoveredWrites)
			assert.Equal(t, uint64(3-len(tc.want)), st.SkippedSlots)
		})
	}
}

func TestCrashBatchConsumer(t *testing.T) {
	// A consumer killed holding a claim of three messages: producers a lap
	// later recover each slot, and with Redeliver the messages not copied
	// out come again (those of its claim, not only the one it was at).
	forConsumerCrashes(t, 4, func(t *testing.T, p string, q *Queue, redeliver bool, at hookPoint) {
		q.SetRecoveryTimeout(20 * time.Millisecond)
		n, err := q.TryEnqueueBatch(strs("t0", "t1", "t2", "kept"))
		require.NoError(t, err)
		require.Equal(t, 4, n)
		crashChild(t, "crash-dequeue-batch", p, at)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A consumer drains concurrently: redelivered messages
		// need room too.
		want := 4 + 3*boolInt(redeliver)
		cons := recoveringHandle(t, p)
		got := make(chan []string, 1)
		go func() {
			var all []string
			buf := make([]byte, 16)
			for len(all) < want {
				n, err := cons.Dequeue(ctx, buf)
				if !assert.NoError(t, err) {
					break
				}
				all = append(all, string(buf[:n]))
			}
			got <- all
		}()
		n, err = q.EnqueueBatch(ctx, strs("n0", "n1", "n2"))
		require.NoError(t, err)
		require.Equal(t, 3, n)
		all := <-got
		_, err = cons.TryDequeue(make([]byte, 16))
		require.ErrorIs(t, err, ErrEmpty)
		st := q.Stats()
		assert.Equal(t, uint64(3), st.RecoveredReads)
		if redeliver {
			assert.Equal(t, uint64(3), st.Redelivered)
			assert.ElementsMatch(t, strings.Fields("kept n0 n1 n2 t0 t1 t2"), all)
		} else {
			assert.Equal(t, uint64(0), st.Redelivered)
			assert.Equal(t, strings.Fields("kept n0 n1 n2"), all)
		}
	})
}

func TestCrashZeroCopy(t *testing.T) {
	// A process killed holding a Reservation or a Taken: recovered like a
	// single claim.
	t.Run("reserve", func(t *testing.T) {
		q, p := newTestQueue(t, 4, 32)
		crashChild(t, "crash-reserve", p, -1)
		require.NoError(t, q.TryEnqueue([]byte("after")))
		cons := recoveringHandle(t, p)
		assert.Equal(t, "after", dequeueString(t, cons))
		assert.Equal(t, uint64(1), cons.Stats().RecoveredWrites)
	})
	t.Run("take", func(t *testing.T) {
		p, q := crashQueue(t, 2, true)
		q.SetRecoveryTimeout(20 * time.Millisecond)
		require.NoError(t, q.TryEnqueue([]byte("held")))
		require.NoError(t, q.TryEnqueue([]byte("x")))
		crashChild(t, "crash-take", p, -1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var got []string
		take := func() {
			tk, err := q.Take(ctx)
			require.NoError(t, err)
			got = append(got, string(tk.Bytes()))
			want := map[string]uint64{"x": 1, "held": 0, "y": 3} // "held" kept its identity at position 2
			assert.Equal(t, want[string(tk.Bytes())], tk.ID(), string(tk.Bytes()))
			if string(tk.Bytes()) == "held" {
				assert.True(t, tk.Redelivered())
			}
			require.NoError(t, tk.Release())
		}
		take() // "x": the dead consumer's slot is the only one in the way now
		require.NoError(t, q.Enqueue(ctx, []byte("y")), "the dead consumer's slot is recovered")
		take()
		take()
		assert.ElementsMatch(t, []string{"held", "x", "y"}, got)
	})
}

func TestOpenWhileCleanMovesIt(t *testing.T) {
	// A joiner checks that its segment is still at the path while a Clean
	// has moved it away for a moment (to check it): the joiner must not
	// fail, since the segment is live and comes back.
	dir := cleanDir(t)
	p := filepath.Join(dir, "q")
	createClosed(t, p)
	var live *Queue
	joined := make(chan struct{})
	release := make(chan struct{})
	type result struct {
		q   *Queue
		err error
	}
	opened := make(chan result, 1)
	hookUnpinned.Store(true)
	defer hookUnpinned.Store(false)
	defer testHook.Store(nil)
	setCleanHook(t, func(step cleanStep, path string) {
		if path != p {
			return
		}
		switch {
		case step == cleanDecided && live == nil:
			require.NoError(t, os.Remove(p))
			var err error
			live, err = Create(p, Config{Capacity: 4, SlotSize: 8})
			require.NoError(t, err)
			setHook(func(hp hookPoint) {
				if hp == hookJoinLocked {
					testHook.Store(nil)
					close(joined)
					<-release
				}
			})
			go func() {
				q, err := Open(p)
				opened <- result{q, err}
			}()
			<-joined // the joiner holds an entry of the live segment
		case step == cleanMoved:
			close(release)
			// Let the joiner look while the segment is away.
			time.Sleep(50 * time.Millisecond)
		}
	})
	// Without the fix, Clean never moves the file (it unlinks it), so
	// the joiner is released here at the latest.
	_, cerr := Clean(dir)
	cleanHook = nil
	select {
	case <-release:
	default:
		close(release)
	}
	require.NotNil(t, live)
	t.Cleanup(func() { live.Close() })
	r := recvWithin(t, opened, 30*time.Second, "Open did not return")
	if r.q != nil {
		t.Cleanup(func() { r.q.Close() })
	}
	require.NoError(t, cerr)
	require.NoError(t, r.err, "Open failed while its live segment was only moved for a moment")
	assert.True(t, live.seg.isAt(p), "the live segment is at its path")
	assert.True(t, r.q.seg.isAt(p))
}

func TestLostClaimLeavesNoRecord(t *testing.T) {
	// A claimant whose CAS loses must not leave its record naming the
	// position another participant won: the record would keep that claim
	// from ever being recovered if its winner died. Here another handle
	// wins the last free position between our record and our CAS.
	for _, side := range []side{producers, consumers} {
		t.Run(side.String(), func(t *testing.T) {
			q, p := newTestQueue(t, 2, 8)
			other := openTestQueue(t, p)
			require.NoError(t, q.TryEnqueue([]byte("a")))
			if side == consumers {
				require.NoError(t, q.TryEnqueue([]byte("b")))
				_, err := q.TryDequeue(make([]byte, 8)) // one left to race for
				require.NoError(t, err)
			}
			fired, wonErr := false, error(nil)
			// Not a blocking hook: the pinned path (pin.go) is the one
			// whose record outlives the call, and the nested call on
			// another handle parks nothing.
			defer testHook.Store(nil)
			setHook(func(hp hookPoint) {
				if hp != hookBeforeClaim || fired {
					return
				}
				fired = true
				if side == producers {
					wonErr = other.TryEnqueue([]byte("won"))
				} else {
					_, wonErr = other.TryDequeue(make([]byte, 8))
				}
			})
			var err error
			if side == producers {
				err = q.TryEnqueue([]byte("lost"))
				require.ErrorIs(t, err, ErrFull)
			} else {
				_, err = q.TryDequeue(make([]byte, 8))
				require.ErrorIs(t, err, ErrEmpty)
			}
			require.True(t, fired)
			require.NoError(t, wonErr)
			info, err := Inspect(p)
			require.NoError(t, err)
			for _, pt := range info.Participants {
				assert.Zero(t, pt.Claims, "participant %d names a claim at rest", pt.Index)
			}
		})
	}
}

// A sleeper held up by a claim whose owner dies notices within the recovery
// timeout plus stallSliceMax, whatever it was waiting for when it fell
// asleep: here it falls asleep on an ordinary full (or empty) queue, and
// only then does a peer claim the slot in its way and die holding it.

// sleepNoticeBound is what the tests assert: far more than the recovery
// timeout (20 ms) plus stallSliceMax (100 ms), to absorb a noisy machine,
// and far less than the 2 s idle slice a sleeper would otherwise sleep.
const sleepNoticeBound = time.Second

func TestSleepingProducerNoticesDeadConsumer(t *testing.T) {
	q, p := newTestQueue(t, 2, 32)
	q.SetSpin(0)
	q.SetRecoveryTimeout(20 * time.Millisecond)
	require.NoError(t, q.TryEnqueue([]byte("m0")))
	require.NoError(t, q.TryEnqueue([]byte("m1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan time.Time, 1)
	go func() {
		assert.NoError(t, q.Enqueue(ctx, []byte("m2")))
		done <- time.Now()
	}()
	waitFor(t, func() bool { return q.Stats().ProducerSleeps > 0 })
	time.Sleep(20 * time.Millisecond) // asleep on a full queue, nothing claimed
	// A consumer takes m0, the slot the producer waits for, and dies.
	crashChild(t, "crash-dequeue", p, hookDequeueTaken)
	died := time.Now()
	select {
	case at := <-done:
		t.Logf("producer went on %v after the consumer died", at.Sub(died))
		assert.Less(t, at.Sub(died), sleepNoticeBound)
	case <-time.After(10 * time.Second):
		t.Fatal("the producer never noticed the dead consumer")
	}
	st := q.Stats()
	assert.Equal(t, uint64(1), st.RecoveredReads)
	assert.Equal(t, "m1", tryDequeueString(t, q))
	assert.Equal(t, "m2", tryDequeueString(t, q))
}

func TestSleepingConsumerNoticesDeadProducer(t *testing.T) {
	q, p := newTestQueue(t, 4, 32)
	q.SetSpin(0)
	q.SetRecoveryTimeout(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 32)
		n, err := q.Dequeue(ctx, buf)
		assert.NoError(t, err)
		got <- string(buf[:n])
	}()
	waitFor(t, func() bool { return q.Stats().ConsumerSleeps > 0 })
	time.Sleep(20 * time.Millisecond) // asleep on an empty queue, nothing claimed
	// A producer claims the head position and dies before publishing.
	crashChild(t, "crash-enqueue", p, hookEnqueueClaimed)
	died := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for q.Stats().RecoveredWrites == 0 {
		require.True(t, time.Now().Before(deadline), "the consumer never noticed the dead producer")
		time.Sleep(time.Millisecond)
	}
	t.Logf("consumer recovered the claim %v after the producer died", time.Since(died))
	assert.Less(t, time.Since(died), sleepNoticeBound)
	// Still asleep, and woken by the next message.
	select {
	case m := <-got:
		t.Fatalf("Dequeue returned %q with nothing published", m)
	default:
	}
	require.NoError(t, q.TryEnqueue([]byte("after")))
	m := recvWithin(t, got, 10*time.Second, "the consumer did not wake for the next message")
	assert.Equal(t, "after", m)
}
