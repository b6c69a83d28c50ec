package mpmc

// Issue 14, item 1: a segment whose size matches its header but whose pages
// are holes must be refused before it is mapped. On tmpfs even a read fault
// on a hole allocates a page: mapping such a file and sweeping its slots
// fills the file system, or dies of SIGBUS when the file system is smaller
// than the file.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const childOpEnv = "MPMC_TEST_OP"

func init() {
	// sparse-open runs Open or Inspect (childOpEnv) on path, which must
	// refuse it with ErrBadSegment: it prints the error on stdout and exits
	// 0. Anything else is a failure, on stderr.
	childRoles["sparse-open"] = func(path string) int {
		var err error
		switch op := os.Getenv(childOpEnv); op {
		case "open":
			var q *Queue
			if q, err = Open(path); err == nil {
				q.Close()
			}
		case "inspect":
			_, err = Inspect(path)
		default:
			fmt.Fprintln(os.Stderr, "unknown op", op)
			return 2
		}
		if !errors.Is(err, ErrBadSegment) {
			fmt.Fprintf(os.Stderr, "%s: got %v, want ErrBadSegment\n", os.Getenv(childOpEnv), err)
			return 1
		}
		fmt.Print(err)
		return 0
	}
}

// mountTmpfs mounts a private tmpfs of the given size on a fresh directory
// and unmounts it when the test ends. It skips the test if mounting is not
// permitted (not root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot mount a private tmpfs (needs CAP_SYS_ADMIN): %v", err)
		}
		require.NoError(t, err)
	}
	// Registered after t.TempDir's own cleanup, so it runs before it.
	t.Cleanup(func() { assert.NoError(t, unix.Unmount(dir, 0)) })
	return dir
}

// freeBytes returns the free space of the file system holding dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &st))
	return int64(st.Bfree) * st.Bsize
}

// sparseHeader returns a valid identity block (the first 0x80 bytes of a
// segment) for the geometry capacity x slotSize.
func sparseHeader(t *testing.T, capacity, slotSize uint64) ([]byte, geometry) {
	t.Helper()
	g, err := newGeometry(capacity, slotSize)
	require.NoError(t, err)
	hdr := validImage(t, 4, 8)[:0x80]
	ne := binary.NativeEndian
	ne.PutUint64(hdr[offCapacity:], g.capacity)
	ne.PutUint64(hdr[offSlotSize:], g.slotSize)
	ne.PutUint64(hdr[offSlotStride:], g.slotStride)
	ne.PutUint64(hdr[offTotalSize:], g.totalSize)
	_, err = validateHeader(hdr, g.totalSize)
	require.NoError(t, err, "the test's header must be valid")
	return hdr, g
}

// childExit waits for c and returns its error (nil for exit 0), failing the
// test if it runs past timeout.
func childExit(t *testing.T, c *child, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("child %s still running after %v; stderr:\n%s", c.name, timeout, c.stderr.String())
		return nil
	}
}

// describeExit says how a child ended, for failure messages.
func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("killed by %v", ws.Signal())
		}
	}
	return fmt.Sprint(err)
}

func TestOpenSparseSegment(t *testing.T) {
	// A 128 MiB segment (2^20 slots of 64 bytes) whose only allocated page
	// is its header, on a 1 MiB tmpfs: before the fix, the join sweep's
	// reads allocated pages until the tmpfs was full, then the process
	// died of SIGBUS.
	dir := mountTmpfs(t, "1m")
	hdr, g := sparseHeader(t, 1<<20, 64)
	p := filepath.Join(dir, "sparse")
	t.Cleanup(func() { os.Remove(p) })
	require.NoError(t, os.WriteFile(p, hdr, 0o600))
	require.NoError(t, os.Truncate(p, int64(g.totalSize))) // ftruncate: holes
	free := freeBytes(t, dir)
	require.Less(t, free, int64(g.totalSize), "the tmpfs must be smaller than the file")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, op := range []string{"open", "inspect"} {
		c := startChild(t, ctx, "sparse-open", p, childOpEnv+"="+op)
		err := childExit(t, c, time.Minute)
		require.NoError(t, err, "%s of a sparse segment: child %s; stderr:\n%s", op, describeExit(err), c.stderr.String())
		require.Empty(t, c.stderr.String(), op)
		assert.Contains(t, c.stdout.String(), "sparse file", op)
		assert.Contains(t, c.stdout.String(), fmt.Sprintf("of %d bytes allocated", g.totalSize), op)
		// Nothing was allocated on the way: at most a few pages (the
		// header read) may differ.
		assert.InDelta(t, free, freeBytes(t, dir), 64<<10, "%s filled the tmpfs", op)
	}
	// And in this process too (the child proved it does not fault).
	_, err := Open(p)
	require.ErrorIs(t, err, ErrBadSegment)
	_, err = Inspect(p)
	require.ErrorIs(t, err, ErrBadSegment)
}

func TestCreateWithoutFallocate(t *testing.T) {
	// Where fallocate is not supported, Create sizes the file and then
	// allocates it by writing: the segment it makes is never sparse, so
	// Open accepts it. The file is made in the test's temporary directory
	// (a disk file system here), not on tmpfs, where the creator's
	// MAP_POPULATE alone allocates every page: elsewhere a shared mapping
	// is populated with read faults, which leave holes as they are. The
	// slots are larger than a page, so writing each slot's control word
	// does not touch every page either.
	defer func(f func(int, uint32, int64, int64) error) { fallocate = f }(fallocate)
	fallocate = func(int, uint32, int64, int64) error { return unix.EOPNOTSUPP }
	p := filepath.Join(t.TempDir(), "q")
	t.Cleanup(func() { os.Remove(p) })
	q, err := Create(p, Config{Capacity: 64, SlotSize: 16000})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	var st unix.Stat_t
	require.NoError(t, unix.Stat(p, &st))
	assert.GreaterOrEqual(t, st.Blocks*512, st.Size, "every byte of the segment is allocated")
	q2 := openTestQueue(t, p)
	require.NoError(t, q.TryEnqueue([]byte("allocated")))
	assert.Equal(t, "allocated", dequeueString(t, q2))
	_, err = Inspect(p)
	require.NoError(t, err)
}
