package mpmc

// Issue 14, item 2: Clean must never remove a live segment. Between Clean's
// decision that the file it opened is unused and its removal of the path,
// the path can be replaced by a new, live segment.

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cleanDir returns a fresh private directory under /dev/shm, removed with
// everything in it when the test ends.
func cleanDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "mpmc-test-clean-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// setCleanHook installs f as cleanHook for the rest of the test.
func setCleanHook(t *testing.T, f func(cleanStep, string)) {
	cleanHook = f
	t.Cleanup(func() { cleanHook = nil })
}

// stillAt reports whether q's segment is (still, or again within a second)
// the file at q's path: a Clean may move a live segment away for a moment
// while it checks the file it found there, and puts it back.
func stillAt(q *Queue) bool {
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		if q.seg.isAt(q.path) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// createClosed creates a segment at p and closes its handle: an unused
// segment.
func createClosed(t *testing.T, p string) {
	t.Helper()
	q, err := Create(p, Config{Capacity: 4, SlotSize: 8})
	require.NoError(t, err)
	require.NoError(t, q.Close())
}

func TestCleanReplacedByLiveSegment(t *testing.T) {
	// Clean judges the unused segment at p; before it removes it, p is
	// removed and a new segment, in use, is created there. Clean must
	// leave the new one alone.
	dir := cleanDir(t)
	p := filepath.Join(dir, "q")
	createClosed(t, p)
	var live *Queue
	setCleanHook(t, func(step cleanStep, path string) {
		if step == cleanDecided && path == p && live == nil {
			require.NoError(t, os.Remove(p))
			var err error
			live, err = Create(p, Config{Capacity: 4, SlotSize: 8})
			require.NoError(t, err)
		}
	})
	removed, err := Clean(dir)
	cleanHook = nil
	require.NotNil(t, live, "the hook ran")
	t.Cleanup(func() { live.Close() })
	require.NoError(t, err)
	assert.NotContains(t, removed, p)
	require.True(t, live.seg.isAt(p), "Clean removed the live segment that replaced the one it judged")
	q := openTestQueue(t, p)
	require.NoError(t, live.TryEnqueue([]byte("alive")))
	assert.Equal(t, "alive", dequeueString(t, q))
	// Nothing left under a private name.
	left, err := filepath.Glob(filepath.Join(dir, ".*"))
	require.NoError(t, err)
	assert.Empty(t, left)
}

func TestCleanReplacedByUnusedSegment(t *testing.T) {
	// The replacement is unused too: Clean removes it.
	dir := cleanDir(t)
	p := filepath.Join(dir, "q")
	createClosed(t, p)
	replaced := false
	setCleanHook(t, func(step cleanStep, path string) {
		if step == cleanDecided && path == p && !replaced {
			replaced = true
			require.NoError(t, os.Remove(p))
			createClosed(t, p)
		}
	})
	removed, err := Clean(dir)
	require.NoError(t, err)
	require.True(t, replaced)
	assert.Equal(t, []string{p}, removed)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestCleanCannotPutBack(t *testing.T) {
	// The live replacement was moved away by Clean, and while it was away
	// yet another segment took its path (linked by a creator that gave up
	// waiting for the directory lock, or one that does not take it): Clean
	// cannot put it back, and says so, naming both paths, rather than
	// losing it silently.
	defer func(d time.Duration) { openInitWait = d }(openInitWait)
	openInitWait = 10 * time.Millisecond // the creator's wait for the lock
	dir := cleanDir(t)
	p := filepath.Join(dir, "q")
	createClosed(t, p)
	var live, third *Queue
	setCleanHook(t, func(step cleanStep, path string) {
		if path != p {
			return
		}
		var err error
		switch {
		case step == cleanDecided && live == nil:
			require.NoError(t, os.Remove(p))
			live, err = Create(p, Config{Capacity: 4, SlotSize: 8})
			require.NoError(t, err)
		case step == cleanMoved && third == nil:
			third, err = Create(p, Config{Capacity: 4, SlotSize: 8})
			require.NoError(t, err)
		}
	})
	_, err := Clean(dir)
	cleanHook = nil
	require.NotNil(t, live)
	t.Cleanup(func() { live.Close() })
	require.NotNil(t, third, "Clean moved the live segment away")
	t.Cleanup(func() { third.Close() })
	require.Error(t, err)
	assert.Contains(t, err.Error(), p)
	priv, gerr := filepath.Glob(filepath.Join(dir, cleanPrefix+"*"))
	require.NoError(t, gerr)
	require.Len(t, priv, 1, "the live segment is still there, under its private name")
	assert.Contains(t, err.Error(), priv[0])
	var st1, st2 os.FileInfo
	st1, gerr = os.Stat(priv[0])
	require.NoError(t, gerr)
	st2, gerr = live.seg.f.Stat()
	require.NoError(t, gerr)
	assert.True(t, os.SameFile(st1, st2))
}

func TestCleanRaceLoop(t *testing.T) {
	// Goroutines create, open, use, close and remove segments on a few
	// paths while two others Clean the directory. No segment may vanish
	// from its path while a handle on it is open (its users' own removals
	// never overlap an open handle: see mu). The window between Clean's
	// decision and its removal is widened through cleanHook so that the
	// race is frequent, not one in 100,000.
	dir := cleanDir(t)
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	const nPaths, workers, cleaners = 3, 4, 2
	paths := make([]string, nPaths)
	for i := range paths {
		paths[i] = filepath.Join(dir, "q"+string(rune('a'+i)))
	}
	// A user removes a path only with mu[i] locked, and holds it shared
	// while it has a handle on the segment at paths[i].
	var mu [nPaths]sync.RWMutex
	setCleanHook(t, func(step cleanStep, path string) {
		if step == cleanDecided {
			time.Sleep(200 * time.Microsecond)
		}
	})
	var vanished, opens, cleaned atomic.Int64
	var failures sync.Map // error text -> count
	fail := func(err error) {
		n, _ := failures.LoadOrStore(strings.ReplaceAll(err.Error(), dir, "DIR"), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range cleaners {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				removed, err := Clean(dir)
				if err != nil {
					fail(err)
				}
				cleaned.Add(int64(len(removed)))
			}
		})
	}
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 8)
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rand.IntN(nPaths)
				p := paths[i]
				mu[i].RLock()
				q, err := Create(p, Config{Capacity: 4, SlotSize: 8})
				if errors.Is(err, fs.ErrExist) {
					q, err = Open(p)
				}
				if err != nil {
					mu[i].RUnlock()
					// Removed before we could join it: a normal
					// outcome. Anything else (a full table, say,
					// while a Clean holds it whole) is a failure.
					if !errors.Is(err, fs.ErrNotExist) {
						fail(err)
					}
					continue
				}
				opens.Add(1)
				if err := q.TryEnqueue([]byte("x")); err != nil && !errors.Is(err, ErrFull) {
					fail(err)
				}
				if _, err := q.TryDequeue(buf); err != nil && !errors.Is(err, ErrEmpty) {
					fail(err)
				}
				if !stillAt(q) {
					vanished.Add(1)
				}
				if err := q.Close(); err != nil {
					fail(err)
				}
				mu[i].RUnlock()
				if rand.IntN(2) == 0 {
					mu[i].Lock()
					os.Remove(p)
					mu[i].Unlock()
				}
			}
		})
	}
	time.Sleep(run)
	close(stop)
	wg.Wait()
	t.Logf("%d opens, %d segments removed by Clean, %d vanished", opens.Load(), cleaned.Load(), vanished.Load())
	failures.Range(func(k, v any) bool {
		t.Errorf("%d times: %s", v.(*atomic.Int64).Load(), k)
		return true
	})
	assert.Zero(t, vanished.Load(), "live segments removed from their path")
	assert.NotZero(t, cleaned.Load(), "Clean removed unused segments")
	assert.NotZero(t, opens.Load())
}

func TestCleanRestoresLeftover(t *testing.T) {
	// A Clean that died while it held a file under its private name
	// leaves it there: a later Clean moves it back if it is in use, and
	// removes it if not (once it is older than tempGrace).
	defer func(g time.Duration) { tempGrace = g }(tempGrace)
	tempGrace = 0
	dir := cleanDir(t)
	live, err := Create(filepath.Join(dir, "live"), Config{Capacity: 4, SlotSize: 8})
	require.NoError(t, err)
	t.Cleanup(func() { live.Close() })
	unused := filepath.Join(dir, "unused")
	createClosed(t, unused)
	livePriv, unusedPriv := privateName(live.Path()), privateName(unused)
	require.NoError(t, os.Rename(live.Path(), livePriv))
	require.NoError(t, os.Rename(unused, unusedPriv))
	removed, err := Clean(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{unusedPriv}, removed)
	assert.True(t, live.seg.isAt(live.Path()), "the live segment is back at its own name")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "live", entries[0].Name())
}
