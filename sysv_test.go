package mpmc

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func init() {
	// Opens the System V queue of key MPMC_TEST_PATH, dequeues
	// MPMC_TEST_COUNT messages "m<i>" and enqueues "done" (echo).
	childRoles["sysv-echo"] = queueRole("open", openSysVKey, echo)
	// Opens the System V queue and dies holding its participant.
	childRoles["sysv-die"] = queueRole("open", openSysVKey, func(q *Queue) int {
		fmt.Print(q.self)
		os.Stdout.Sync()
		os.Exit(0) // no Close
		return 0
	})
}

// openSysVKey opens the System V queue whose key is path (a child's
// MPMC_TEST_PATH).
func openSysVKey(path string) (*Queue, error) {
	key, _ := strconv.ParseInt(path, 0, 64)
	return OpenSysV(int(key))
}

// sysvKey returns a key with no segment, and removes whatever the test
// leaves under it.
func sysvKey(t *testing.T) int {
	t.Helper()
	for {
		key := int(rand.Int32N(1<<30)) + 1<<30
		if _, err := unix.SysvShmGet(key, 0, 0); err == nil {
			continue
		}
		t.Cleanup(func() {
			if id, err := unix.SysvShmGet(key, 0, 0); err == nil {
				unix.SysvShmCtl(id, unix.IPC_RMID, nil)
			}
			os.Remove(SysVLockPath(key))
		})
		return key
	}
}

func TestSysVCreateOpen(t *testing.T) {
	key := sysvKey(t)
	q, err := CreateSysV(key, Config{Capacity: 16, SlotSize: 32})
	require.NoError(t, err)
	defer q.Close()
	assert.Equal(t, sysvPath(key), q.Path())
	_, err = CreateSysV(key, Config{Capacity: 16, SlotSize: 32})
	assert.ErrorIs(t, err, fs.ErrExist)

	// Visible in ipcs -m, mode 0600, the size of the layout.
	out, err := exec.Command("ipcs", "-m").Output()
	if err == nil {
		assert.Contains(t, string(out), fmt.Sprintf("0x%08x", key))
	}
	id, err := unix.SysvShmGet(key, 0, 0)
	require.NoError(t, err)
	var ds unix.SysvShmDesc
	_, err = unix.SysvShmCtl(id, unix.IPC_STAT, &ds)
	require.NoError(t, err)
	assert.Equal(t, uint32(0o600), uint32(ds.Perm.Mode)&0o777)
	assert.Equal(t, q.seg.totalSize, ds.Segsz)
	st, err := os.Stat(SysVLockPath(key))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	r, err := OpenSysV(key)
	require.NoError(t, err)
	defer r.Close()
	assert.NotEqual(t, q.self, r.self)
	require.NoError(t, q.TryEnqueue([]byte("sysv")))
	buf := make([]byte, 32)
	n, err := r.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "sysv", string(buf[:n]))

	// Send works for System V queues too.
	h := handOver(t, q)
	assert.Equal(t, sysvPath(key), h.Path())
	require.NoError(t, h.TryEnqueue([]byte("x")))

	info, err := InspectSysV(key)
	require.NoError(t, err)
	assert.Equal(t, 16, info.Capacity)
	assert.Len(t, info.Participants, 3)
	keys, err := ListSysV()
	require.NoError(t, err)
	assert.Contains(t, keys, key)

	// In use: Clean leaves it.
	removed, err := Clean(sysvLockDir)
	require.NoError(t, err)
	assert.NotContains(t, removed, SysVLockPath(key))
}

func TestSysVBadInput(t *testing.T) {
	_, err := CreateSysV(0, Config{Capacity: 16, SlotSize: 32})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	key := sysvKey(t)
	_, err = OpenSysV(key)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	// A segment that is not a queue, with a lock file.
	id, err := unix.SysvShmGet(key, headerSize+4096, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(SysVLockPath(key), nil, 0o600))
	_, err = OpenSysV(key)
	assert.ErrorIs(t, err, ErrBadSegment)
	// Too small.
	unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	_, err = unix.SysvShmGet(key, 4096, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
	require.NoError(t, err)
	_, err = OpenSysV(key)
	assert.ErrorIs(t, err, ErrBadSegment)
	assert.Contains(t, err.Error(), "smaller than")
	// Clean leaves a segment that is not a queue alone.
	removed, err := Clean(sysvLockDir)
	require.NoError(t, err)
	assert.NotContains(t, removed, SysVLockPath(key))
}

// TestProcessSysV: a child joins by key; another dies holding its
// participant, which the lock file shows dead; Clean then removes the
// unused segment and its lock file.
func TestProcessSysV(t *testing.T) {
	key := sysvKey(t)
	q, err := CreateSysV(key, Config{Capacity: 16, SlotSize: 32})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const count = 50
	c := startChild(t, ctx, "sysv-echo", strconv.Itoa(key), childCountEnv+"="+strconv.Itoa(count))
	for i := range count {
		require.NoError(t, q.Enqueue(ctx, []byte(fmt.Sprintf("m%d", i))))
	}
	c.wait(t, time.Minute)
	buf := make([]byte, 32)
	n, err := q.TryDequeue(buf)
	require.NoError(t, err)
	assert.Equal(t, "done", string(buf[:n]))

	d := startChild(t, ctx, "sysv-die", strconv.Itoa(key))
	d.wait(t, time.Minute)
	idx, err := strconv.Atoi(strings.TrimSpace(d.stdout.String()))
	require.NoError(t, err)
	info, err := InspectSysV(key)
	require.NoError(t, err)
	for _, p := range info.Participants {
		if p.Index == idx {
			assert.False(t, p.Alive, "the dead child's lock went with it")
		}
	}
	require.NoError(t, q.Close())
	removed, err := Clean(sysvLockDir)
	require.NoError(t, err)
	assert.Contains(t, removed, SysVLockPath(key))
	_, err = unix.SysvShmGet(key, 0, 0)
	assert.ErrorIs(t, err, unix.ENOENT, "IPC_RMID done")
	_, err = os.Stat(SysVLockPath(key))
	assert.True(t, os.IsNotExist(err))
}

func TestSysVRemove(t *testing.T) {
	key := sysvKey(t)
	q, err := CreateSysV(key, Config{Capacity: 8, SlotSize: 8})
	require.NoError(t, err)
	require.NoError(t, RemoveSysV(key))
	require.NoError(t, q.TryEnqueue([]byte("still")), "handles work until closed")
	require.NoError(t, q.Close())
	_, err = OpenSysV(key)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestSysVHugePages(t *testing.T) {
	reserveHugePages(t, 4)
	key := sysvKey(t)
	q, err := CreateSysV(key, Config{Capacity: 64, SlotSize: 16 << 10, HugePages: true})
	require.NoError(t, err)
	defer q.Close()
	r, err := OpenSysV(key)
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, q.TryEnqueue(make([]byte, 16<<10)))
	_, err = r.TryDequeue(make([]byte, 16<<10))
	require.NoError(t, err)
}
