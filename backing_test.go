package mpmc

// The backings other than a file under /dev/shm: anonymous (memfd) queues
// and their hand-over (Send/Receive, File/OpenFile), System V segments and
// huge pages.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
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

// Anonymous (memfd) queues, Send/Receive, File/OpenFile: in-process tests
// of the validation and of descriptor hygiene, and real processes for the
// hand-over across processes.

func init() {
	// Receives a queue on the socket inherited as descriptor 3, then
	// dequeues MPMC_TEST_COUNT messages "m<i>" in order and enqueues
	// "done", and prints its participant index.
	childRoles["receive-echo"] = queueRole("receive", receiveInherited, echo)
	// Joins the queue whose segment is inherited as descriptor 3
	// (OpenFile), then does what receive-echo does.
	childRoles["openfile-echo"] = queueRole("open file", func(string) (*Queue, error) {
		f := os.NewFile(3, "queue")
		defer f.Close() // the handle has a description of its own
		return OpenFile(f)
	}, echo)
	// Receives a queue and tries to truncate the segment through its own
	// description; prints the error.
	childRoles["receive-truncate"] = queueRole("receive", receiveInherited, func(q *Queue) int {
		fmt.Print(unix.Ftruncate(int(q.seg.f.Fd()), 4096))
		return 0
	})
}

// receiveInherited receives a queue on the unix socket inherited as
// descriptor 3 (a child role's path is not used).
func receiveInherited(string) (*Queue, error) {
	f := os.NewFile(3, "socket")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return Receive(c.(*net.UnixConn))
}

func echo(q *Queue) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	count, _ := strconv.Atoi(os.Getenv(childCountEnv))
	buf := make([]byte, q.SlotSize())
	for i := range count {
		n, err := q.Dequeue(ctx, buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dequeue:", err)
			return 1
		}
		if want := fmt.Sprintf("m%d", i); string(buf[:n]) != want {
			fmt.Fprintf(os.Stderr, "got %q, want %q\n", buf[:n], want)
			return 1
		}
	}
	if err := q.Enqueue(ctx, []byte("done")); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		return 1
	}
	fmt.Print(q.self)
	return 0
}

// socketPair returns two connected unix stream sockets: one as a conn, the
// other as a file to hand to a child (closed when the test ends).
func socketPair(t *testing.T) (*net.UnixConn, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fds[0]), "parent")
	c, err := net.FileConn(f)
	f.Close()
	require.NoError(t, err)
	other := os.NewFile(uintptr(fds[1]), "child")
	t.Cleanup(func() { c.Close(); other.Close() })
	return c.(*net.UnixConn), other
}

// connPair returns two connected unix stream sockets as conns.
func connPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, f := socketPair(t)
	c, err := net.FileConn(f)
	f.Close()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return a, c.(*net.UnixConn)
}

func newAnonymous(t *testing.T, cfg Config) *Queue {
	t.Helper()
	q, err := CreateAnonymous(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return q
}

// handOver sends q over a fresh socket pair and receives it in this
// process.
func handOver(t *testing.T, q *Queue) *Queue {
	t.Helper()
	a, b := connPair(t)
	require.NoError(t, q.Send(a))
	r, err := Receive(b)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func TestAnonymousCreateSealed(t *testing.T) {
	q := newAnonymous(t, Config{Capacity: 8, SlotSize: 16})
	assert.Equal(t, "", q.Path())
	fd := int(q.seg.f.Fd())
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	require.NoError(t, err)
	assert.Equal(t, requiredSeals, seals&requiredSeals)
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	require.NoError(t, err)
	assert.Contains(t, target, "/memfd:"+memfdName)
	// Neither shrinking nor growing, by anyone.
	assert.ErrorIs(t, unix.Ftruncate(fd, 4096), unix.EPERM)
	assert.ErrorIs(t, unix.Ftruncate(fd, int64(q.seg.totalSize)*2), unix.EPERM)
	_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE)
	assert.ErrorIs(t, err, unix.EPERM, "F_SEAL_SEAL")
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))
	assert.Equal(t, uint32(0o600), st.Mode&0o777)
	require.NoError(t, q.TryEnqueue([]byte("x")))
	assert.Equal(t, "x", tryDequeueString(t, q))
}

// TestReceiveOwnDescription: the receiver is a participant of its own,
// with a lock on its own open file description, which stays when the
// sender's handle goes.
func TestReceiveOwnDescription(t *testing.T) {
	q := newAnonymous(t, Config{Capacity: 8, SlotSize: 16})
	r := handOver(t, q)
	assert.NotEqual(t, q.self, r.self)
	assert.Empty(t, r.Path())
	require.NoError(t, q.TryEnqueue([]byte("hello")))
	assert.Equal(t, "hello", tryDequeueString(t, r))
	alive, err := participantAlive(r.seg.f, q.self)
	require.NoError(t, err)
	assert.True(t, alive, "the sender's participant, seen from the receiver's description")
	require.NoError(t, q.Close())
	alive, err = participantAlive(r.seg.f, q.self)
	require.NoError(t, err)
	assert.False(t, alive, "the sender's lock went with its description, although the receiver holds the memfd")
	// The receiver's own lock is held by a description of its own: a
	// third description sees it.
	third, _, err := reopenFD(int(r.seg.f.Fd()))
	require.NoError(t, err)
	defer third.Close()
	alive, err = participantAlive(third, r.self)
	require.NoError(t, err)
	assert.True(t, alive)
	require.NoError(t, r.TryEnqueue([]byte("still")))
}

func TestSendNamedQueue(t *testing.T) {
	q, p := newTestQueue(t, 8, 16)
	r := handOver(t, q)
	assert.Equal(t, p, r.Path())
	assert.True(t, r.seg.isAt(p))
	require.NoError(t, r.TryEnqueue([]byte("named")))
	assert.Equal(t, "named", tryDequeueString(t, q))
}

func TestSendClosed(t *testing.T) {
	q, err := CreateAnonymous(Config{Capacity: 8, SlotSize: 16})
	require.NoError(t, err)
	require.NoError(t, q.Close())
	a, _ := connPair(t)
	assert.ErrorIs(t, q.Send(a), ErrClosed)
	_, err = q.File()
	assert.ErrorIs(t, err, ErrClosed)
}

// TestProcessReceive hands an anonymous queue to a child over a socket
// it inherits; the child dequeues what the parent enqueues and answers.
func TestProcessReceive(t *testing.T) {
	testProcessJoin(t, "receive-echo")
}

// TestProcessOpenFile passes a named and an anonymous queue to a child
// through ExtraFiles (File, OpenFile).
func TestProcessOpenFile(t *testing.T) {
	testProcessJoin(t, "openfile-echo")
}

func testProcessJoin(t *testing.T, role string) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("named=%v", named), func(t *testing.T) {
			var q *Queue
			if named {
				q, _ = newTestQueue(t, 16, 32)
			} else {
				q = newAnonymous(t, Config{Capacity: 16, SlotSize: 32})
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const count = 100
			var c *child
			if role == "receive-echo" {
				conn, other := socketPair(t)
				c = startChildWith(t, ctx, role, "", []*os.File{other}, childCountEnv+"="+strconv.Itoa(count))
				other.Close()
				require.NoError(t, q.Send(conn))
			} else {
				f, err := q.File()
				require.NoError(t, err)
				c = startChildWith(t, ctx, role, "", []*os.File{f}, childCountEnv+"="+strconv.Itoa(count))
				f.Close() // else the child would share our participant
			}
			for i := range count {
				require.NoError(t, q.Enqueue(ctx, []byte(fmt.Sprintf("m%d", i))))
			}
			c.wait(t, time.Minute) // it dequeued them all and answered
			buf := make([]byte, 32)
			n, err := q.TryDequeue(buf)
			require.NoError(t, err)
			assert.Equal(t, "done", string(buf[:n]))
			idx, err := strconv.Atoi(c.stdout.String())
			require.NoError(t, err, "child printed %q", c.stdout.String())
			assert.NotEqual(t, q.self, idx, "the child is a participant of its own")
			assert.Equal(t, 0, q.Len())
		})
	}
}

// TestProcessSealedNoTruncate: a peer that received an anonymous queue
// cannot truncate it: ftruncate fails with EPERM.
func TestProcessSealedNoTruncate(t *testing.T) {
	q := newAnonymous(t, Config{Capacity: 8, SlotSize: 16})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, other := socketPair(t)
	c := startChildWith(t, ctx, "receive-truncate", "", []*os.File{other})
	other.Close()
	require.NoError(t, q.Send(conn))
	c.wait(t, time.Minute)
	assert.Equal(t, unix.EPERM.Error(), c.stdout.String())
	require.NoError(t, q.TryEnqueue([]byte("alive")), "the segment is whole")
}

// sendRaw sends a hand-over header of the given kind and flags with fds
// (closed afterwards) and extra bytes after it.
func sendRaw(t *testing.T, conn *net.UnixConn, kind segmentKind, flags uint32, fds []int, hdrFDs int, extra []byte) {
	t.Helper()
	var hdr [handoverSize]byte
	ne := binary.NativeEndian
	ne.PutUint64(hdr[0:], handoverMagic)
	ne.PutUint32(hdr[8:], handoverVersion)
	ne.PutUint32(hdr[12:], uint32(kind))
	ne.PutUint32(hdr[16:], flags)
	ne.PutUint32(hdr[20:], uint32(hdrFDs))
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := conn.WriteMsgUnix(append(hdr[:], extra...), oob, nil)
	require.NoError(t, err)
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func memfdOf(t *testing.T, size int64, seals int, content []byte) int {
	t.Helper()
	fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	require.NoError(t, err)
	if size > 0 {
		require.NoError(t, unix.Fallocate(fd, 0, 0, size))
	}
	if content != nil {
		_, err := unix.Pwrite(fd, content, 0)
		require.NoError(t, err)
	}
	if seals != 0 {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals)
		require.NoError(t, err)
	}
	return fd
}

// TestReceiveBadInput: whatever the peer sends, Receive returns an error
// wrapping ErrBadSegment (not a queue) or ErrHandover (not a hand-over),
// never panics, and leaks no descriptor.
func TestReceiveBadInput(t *testing.T) {
	good := newAnonymous(t, Config{Capacity: 8, SlotSize: 16})
	goodHeader := make([]byte, identitySize)
	_, err := unix.Pread(int(good.seg.f.Fd()), goodHeader, 0)
	require.NoError(t, err)
	dup := func() int {
		fd, err := unix.Dup(int(good.seg.f.Fd()))
		require.NoError(t, err)
		return fd
	}
	cases := []struct {
		name string
		send func(t *testing.T, c *net.UnixConn)
		want error
		why  string
	}{
		{"pipe", func(t *testing.T, c *net.UnixConn) {
			var p [2]int
			require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
			sendRaw(t, c, kindMemfd, 0, p[:1], 1, nil)
			unix.Close(p[1])
		}, ErrBadSegment, "a pipe"},
		{"socket", func(t *testing.T, c *net.UnixConn) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			sendRaw(t, c, kindFile, 0, fds[:1], 1, nil)
			unix.Close(fds[1])
		}, ErrBadSegment, "a socket"},
		{"wrong magic", func(t *testing.T, c *net.UnixConn) {
			f, err := os.CreateTemp(t.TempDir(), "notaqueue")
			require.NoError(t, err)
			require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 0, headerSize+4096))
			_, err = f.WriteAt([]byte("definitely not a queue"), 0)
			require.NoError(t, err)
			fd := dupOf(t, f)
			f.Close()
			sendRaw(t, c, kindFile, 0, []int{fd}, 1, nil)
		}, ErrBadSegment, "wrong magic"},
		{"memfd without seals", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, 0, []int{memfdOf(t, int64(good.seg.totalSize), 0, goodHeader)}, 1, nil)
		}, ErrBadSegment, "not sealed"},
		{"memfd sealed shrink only", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, 0, []int{memfdOf(t, int64(good.seg.totalSize), unix.F_SEAL_SHRINK, goodHeader)}, 1, nil)
		}, ErrBadSegment, "not sealed"},
		{"memfd too small", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, 0, []int{memfdOf(t, 4096, requiredSeals, goodHeader)}, 1, nil)
		}, ErrBadSegment, "smaller than"},
		{"memfd empty", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, 0, []int{memfdOf(t, 0, requiredSeals, nil)}, 1, nil)
		}, ErrBadSegment, "empty"},
		{"memfd sized differently", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, 0, []int{memfdOf(t, int64(good.seg.totalSize)+4096, requiredSeals, goodHeader)}, 1, nil)
		}, ErrBadSegment, "truncated or extended"},
		{"kind mismatch", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindFile, 0, []int{dup()}, 1, nil)
		}, ErrBadSegment, "handed over as a file"},
		{"eventfds missing", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, handoverEventfd, []int{dup()}, 3, nil)
		}, ErrHandover, "descriptors received"},
		{"eventfd not an eventfd", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, handoverEventfd, []int{dup(), dup(), dup()}, 3, nil)
		}, ErrBadSegment, "not an eventfd"},
		{"no descriptor", func(t *testing.T, c *net.UnixConn) {
			sendRaw(t, c, kindMemfd, 0, nil, 1, nil)
		}, ErrHandover, "descriptors received"},
		{"not a hand-over", func(t *testing.T, c *net.UnixConn) {
			writeWithFD(t, c, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n...................."), dup())
		}, ErrHandover, "not a queue hand-over"},
		{"closed before", func(t *testing.T, c *net.UnixConn) {
			c.Close()
		}, io.ErrUnexpectedEOF, "before handing"},
		{"closed half-way", func(t *testing.T, c *net.UnixConn) {
			var hdr [handoverSize]byte
			binary.NativeEndian.PutUint64(hdr[:], handoverMagic)
			writeWithFD(t, c, hdr[:12], dup())
			c.Close()
		}, io.ErrUnexpectedEOF, "half-way"},
		{"path cut short", func(t *testing.T, c *net.UnixConn) {
			var hdr [handoverSize]byte
			ne := binary.NativeEndian
			ne.PutUint64(hdr[:], handoverMagic)
			ne.PutUint32(hdr[8:], handoverVersion)
			ne.PutUint32(hdr[20:], 1)
			ne.PutUint32(hdr[32:], 100)
			writeWithFD(t, c, append(hdr[:], "/dev/sh"...), dup())
			c.Close()
		}, io.ErrUnexpectedEOF, "half-way"},
	}
	before := fdList()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := connPair(t)
			tc.send(t, a)
			q, err := Receive(b)
			if q != nil {
				q.Close()
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.why)
			a.Close()
			b.Close()
		})
	}
	assert.Equal(t, before, fdList(), "descriptors leaked")
	// The good queue is untouched by all that.
	require.NoError(t, good.TryEnqueue([]byte("ok")))
}

// writeWithFD writes b with descriptor fd (closed afterwards) to c.
func writeWithFD(t *testing.T, c *net.UnixConn, b []byte, fd int) {
	t.Helper()
	_, _, err := c.WriteMsgUnix(b, unix.UnixRights(fd), nil)
	unix.Close(fd)
	require.NoError(t, err)
}

func dupOf(t *testing.T, f *os.File) int {
	t.Helper()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	require.NoError(t, err)
	return fd
}

// TestOpenFileBadInput: OpenFile refuses what Receive refuses, and leaves
// the caller's file open.
func TestOpenFileBadInput(t *testing.T) {
	fd := memfdOf(t, 1<<20, 0, nil)
	f := os.NewFile(uintptr(fd), "unsealed")
	defer f.Close()
	_, err := OpenFile(f)
	assert.ErrorIs(t, err, ErrBadSegment)
	_, err = unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	assert.NoError(t, err, "the caller's file stays open")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	_, err = OpenFile(r)
	assert.ErrorIs(t, err, ErrBadSegment)
}

// TestHandoverNoLeaks: creating, handing over, joining and closing queues
// of every kind leaves the process with the descriptors it had.
func TestHandoverNoLeaks(t *testing.T) {
	run := func() {
		a, b := connPair(t)
		for _, cfg := range []Config{{Capacity: 8, SlotSize: 16}, {Capacity: 8, SlotSize: 16, Eventfd: true}} {
			q, err := CreateAnonymous(cfg)
			require.NoError(t, err)
			require.NoError(t, q.Send(a))
			r, err := Receive(b)
			require.NoError(t, err)
			f, err := q.File()
			if cfg.Eventfd {
				require.ErrorIs(t, err, ErrNoEventfd)
			} else {
				require.NoError(t, err)
				o, err := OpenFile(f)
				require.NoError(t, err)
				f.Close()
				require.NoError(t, o.Close())
			}
			require.NoError(t, r.Close())
			require.NoError(t, q.Close())
		}
		p := segPath(t)
		q, err := Create(p, Config{Capacity: 8, SlotSize: 16})
		require.NoError(t, err)
		require.NoError(t, q.Send(a))
		r, err := Receive(b)
		require.NoError(t, err)
		require.NoError(t, r.Close())
		require.NoError(t, q.Close())
		require.NoError(t, os.Remove(p))
		a.Close()
		b.Close()
	}
	run() // the first run may open descriptors the runtime keeps (netpoller)
	before := fdList()
	for range 5 {
		run()
	}
	assert.Equal(t, before, fdList(), "descriptors leaked")
}

func TestOpenEventfdQueueRefused(t *testing.T) {
	p := segPath(t)
	q, err := Create(p, Config{Capacity: 8, SlotSize: 16, Eventfd: true})
	require.NoError(t, err)
	defer q.Close()
	_, err = Open(p)
	assert.ErrorIs(t, err, ErrNoEventfd)
	_, err = q.File()
	assert.ErrorIs(t, err, ErrNoEventfd)
	// Inspect still works.
	_, err = Inspect(p)
	assert.NoError(t, err)
	r := handOver(t, q)
	assert.NotNil(t, r.NotEmpty())
}

// fdList describes this process's open descriptors, one per line.
func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		out += e.Name() + " " + target + "\n"
	}
	return out
}

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

const nrHugepages = "/proc/sys/vm/nr_hugepages"

// reserveHugePages makes at least n huge pages free in the hugetlb pool,
// through /proc/sys/vm/nr_hugepages where the kernel lets us, and puts the
// old value back when the test ends; otherwise it skips the test, saying
// why.
func reserveHugePages(t testing.TB, n int) {
	t.Helper()
	if HugePageSize() == 0 {
		t.Skip("no huge pages in this kernel (no Hugepagesize in /proc/meminfo)")
	}
	old, err := os.ReadFile(nrHugepages)
	if err != nil {
		t.Skipf("cannot read %s: %v", nrHugepages, err)
	}
	cur, _ := strconv.Atoi(strings.TrimSpace(string(old)))
	free, _ := strconv.Atoi(hugeFree())
	if free >= n {
		return
	}
	if err := os.WriteFile(nrHugepages, []byte(strconv.Itoa(cur+n-free)), 0); err != nil {
		t.Skipf("cannot reserve %d huge pages through %s: %v", n, nrHugepages, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(nrHugepages, old, 0); err != nil {
			t.Errorf("restore %s to %s: %v", nrHugepages, strings.TrimSpace(string(old)), err)
		}
	})
	if free, _ = strconv.Atoi(hugeFree()); free < n {
		t.Skipf("asked the kernel for %d more huge pages, %d free (memory too fragmented?)", n, free)
	}
}

func TestHugePagesAnonymous(t *testing.T) {
	reserveHugePages(t, 4)
	q := newAnonymous(t, Config{Capacity: 64, SlotSize: 64 << 10, HugePages: true})
	hp := hugePageSizeOf(q.seg.f)
	require.NotZero(t, hp, "the memfd is on hugetlbfs")
	require.NotNil(t, q.seg.whole)
	assert.Zero(t, uint64(len(q.seg.whole))%hp, "whole huge pages mapped")
	assert.Equal(t, int(q.seg.totalSize), len(q.seg.mem))
	r := handOver(t, q) // sealed, validated, mapped in whole huge pages
	assert.NotNil(t, r.seg.whole)
	msg := make([]byte, 64<<10)
	for i := range msg {
		msg[i] = byte(i)
	}
	buf := make([]byte, 64<<10)
	for range 200 {
		require.NoError(t, q.TryEnqueue(msg))
		n, err := r.TryDequeue(buf)
		require.NoError(t, err)
		require.Equal(t, msg, buf[:n])
	}
	require.NoError(t, r.Close())
	require.NoError(t, q.Close())
}

func TestHugePagesNoneAvailable(t *testing.T) {
	if HugePageSize() == 0 {
		t.Skip("no huge pages in this kernel")
	}
	old, err := os.ReadFile(nrHugepages)
	require.NoError(t, err)
	if free, _ := strconv.Atoi(hugeFree()); free > 0 {
		// Empty the pool for the test, where we may.
		if err := os.WriteFile(nrHugepages, []byte("0"), 0); err != nil {
			t.Skipf("huge pages are free and %s is not writable: %v", nrHugepages, err)
		}
		t.Cleanup(func() { os.WriteFile(nrHugepages, old, 0) })
		if free, _ := strconv.Atoi(hugeFree()); free > 0 {
			t.Skip("huge pages still free (in use elsewhere)")
		}
	}
	before := fdList()
	_, err = CreateAnonymous(Config{Capacity: 64, SlotSize: 1024, HugePages: true})
	require.ErrorIs(t, err, ErrNoHugePages)
	assert.Contains(t, err.Error(), "nr_hugepages")
	assert.Equal(t, before, fdList())
}

func TestHugePagesNamedTmpfs(t *testing.T) {
	p := segPath(t)
	q, err := Create(p, Config{Capacity: 64, SlotSize: 1024, HugePages: true})
	if ok, why := shmemTHP(); !ok {
		require.ErrorIs(t, err, ErrNoHugePages)
		assert.Contains(t, err.Error(), why)
		_, serr := os.Lstat(p)
		assert.True(t, os.IsNotExist(serr), "nothing left at the path")
		return
	}
	require.NoError(t, err)
	q.Close()
}

// BenchmarkHugePages: an enqueue and a dequeue of 1 to 64 KiB through a
// ring of 16 MiB and more (beyond the TLB's reach with 4 KiB pages), with
// and without huge pages.
func BenchmarkHugePages(b *testing.B) {
	for _, size := range []int{1 << 10, 4 << 10, 16 << 10, 64 << 10} {
		for _, huge := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%dKiB/huge=%v", size>>10, huge), func(b *testing.B) {
				capacity := max(16<<20/size, 256)
				if huge {
					reserveHugePages(b, (capacity*(size+64)+headerSize)/HugePageSize()+2)
				}
				q, err := CreateAnonymous(Config{Capacity: capacity, SlotSize: size, HugePages: huge})
				require.NoError(b, err)
				defer q.Close()
				msg, buf := make([]byte, size), make([]byte, size)
				// Keep the ring half full, so that the copies walk it.
				for range capacity / 2 {
					require.NoError(b, q.TryEnqueue(msg))
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				for range b.N {
					q.TryEnqueue(msg)
					q.TryDequeue(buf)
				}
			})
		}
	}
}
