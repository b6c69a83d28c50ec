package mpmc

// Issue 14, item 3: while a Clean holds the lock of the whole participants
// table, Open must wait for it, not report a full table that is not full.

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// holdWholeTable takes, on a descriptor of its own, the lock Clean takes
// while it judges a segment (the whole participants table), and returns the
// function that drops it.
func holdWholeTable(t *testing.T, p string) func() {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: participantsOffset, Len: maxParticipants * participantSize}
	require.NoError(t, unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk), "no participant is alive")
	release := func() { f.Close() }
	t.Cleanup(release)
	return release
}

// unusedSegment creates a segment and closes its handle (which held entry
// 0), so that nobody holds any entry.
func unusedSegment(t *testing.T) string {
	t.Helper()
	q, p := newTestQueue(t, 4, 16)
	require.NoError(t, q.Close())
	return p
}

type openResult struct {
	q   *Queue
	err error
	at  time.Time
}

func openAsync(p string) chan openResult {
	c := make(chan openResult, 1)
	go func() {
		q, err := Open(p)
		c <- openResult{q, err, time.Now()}
	}()
	return c
}

func TestOpenWaitsForCleaner(t *testing.T) {
	p := unusedSegment(t)
	release := holdWholeTable(t, p)
	opened := openAsync(p)
	time.Sleep(50 * time.Millisecond)
	released := time.Now()
	release()
	r := recvWithin(t, opened, 30*time.Second, "Open did not return")
	require.NoError(t, r.err, "Open while a cleaner held the table")
	t.Cleanup(func() { r.q.Close() })
	assert.False(t, r.at.Before(released), "Open returned while the table was held")
	require.NoError(t, r.q.TryEnqueue([]byte("joined")))
	assert.Equal(t, "joined", dequeueString(t, r.q))
}

func TestOpenBusyCleaner(t *testing.T) {
	// Held past Open's bound: ErrBusy, never ErrTooManyParticipants.
	defer func(d time.Duration) { openInitWait = d }(openInitWait)
	openInitWait = 20 * time.Millisecond
	p := unusedSegment(t)
	holdWholeTable(t, p)
	_, err := Open(p)
	require.ErrorIs(t, err, ErrBusy)
	assert.NotErrorIs(t, err, ErrTooManyParticipants)
	assert.Contains(t, err.Error(), "held whole by a cleaner")
}

func TestOpenAfterCleanerRemoved(t *testing.T) {
	// The cleaner found the segment unused and removed it: the joiner,
	// which waited, ends with fs.ErrNotExist.
	p := unusedSegment(t)
	release := holdWholeTable(t, p)
	opened := openAsync(p)
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, os.Remove(p))
	release()
	r := recvWithin(t, opened, 30*time.Second, "Open did not return")
	if r.q != nil {
		r.q.Close()
	}
	require.ErrorIs(t, r.err, fs.ErrNotExist)
	assert.False(t, errors.Is(r.err, ErrTooManyParticipants))
}

func TestOpenFullTable(t *testing.T) {
	// A table that is full is still reported as such, at once.
	q, p := newTestQueue(t, 4, 16)
	_ = q
	for range maxParticipants - 1 {
		openTestQueue(t, p)
	}
	start := time.Now()
	_, err := Open(p)
	require.ErrorIs(t, err, ErrTooManyParticipants)
	assert.NotErrorIs(t, err, ErrBusy)
	assert.Less(t, time.Since(start), openInitWait, "a full table is not waited on")
}
