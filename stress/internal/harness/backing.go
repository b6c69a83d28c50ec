package harness

// Backings of a run's segment (stress run -backing): a named file under
// /dev/shm, an anonymous memfd handed to every child over a unix socket,
// or a System V segment opened by key.
//
// A run's Path names the segment in every backing, for Inspect and the
// report: the file's path; for memfd, /proc/PID/fd/N of a descriptor the
// parent keeps (mpmc.Inspect reads a memfd through it); for System V,
// "sysv:0xKEY". A child is told where its queue is with -path: the same
// path for file and sysv, and "unix:N" for memfd, N being the descriptor
// of its end of a socketpair, over which the parent Sends the queue.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

// Backings, as -backing names them.
const (
	BackingFile  = "file"
	BackingMemfd = "memfd"
	BackingSysV  = "sysv"
)

// CheckBacking validates a -backing value.
func CheckBacking(b string) error {
	switch b {
	case BackingFile, BackingMemfd, BackingSysV:
		return nil
	}
	return fmt.Errorf("-backing %q: want file, memfd or sysv", b)
}

// createBacking creates the segment of a run in backing b (not file).
func createBacking(b string, cfg mpmc.Config) (*mpmc.Queue, string, *os.File, error) {
	switch b {
	case BackingMemfd:
		q, err := mpmc.CreateAnonymous(cfg)
		if err != nil {
			return nil, "", nil, fmt.Errorf("cannot create the anonymous queue: %v", err)
		}
		f, err := q.File()
		if err != nil {
			q.Close()
			return nil, "", nil, fmt.Errorf("cannot keep a descriptor of the anonymous queue: %v", err)
		}
		return q, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), f, nil
	case BackingSysV:
		for range 16 {
			key := int(rand.Int32N(1<<30)) + 1<<30
			q, err := mpmc.CreateSysV(key, cfg)
			if errors.Is(err, os.ErrExist) {
				continue
			}
			if err != nil {
				return nil, "", nil, fmt.Errorf("cannot create the System V queue: %v", err)
			}
			return q, q.Path(), nil, nil
		}
		return nil, "", nil, fmt.Errorf("no free System V key found")
	}
	return nil, "", nil, CheckBacking(b)
}

// sysvKey returns the key of a "sysv:0xKEY" path.
func sysvKey(path string) (int, bool) {
	s, ok := strings.CutPrefix(path, "sysv:")
	if !ok {
		return 0, false
	}
	k, err := strconv.ParseUint(s, 0, 32)
	return int(int32(uint32(k))), err == nil
}

// OpenQueue joins the queue a child's -path names: "unix:N" (receive it on
// the socket of descriptor N), "sysv:0xKEY", or a segment file's path.
func OpenQueue(path string) (*mpmc.Queue, error) {
	if s, ok := strings.CutPrefix(path, "unix:"); ok {
		fd, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("-path %s: %v", path, err)
		}
		f := os.NewFile(uintptr(fd), "queue socket")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("-path %s: %v", path, err)
		}
		defer c.Close()
		uc, ok := c.(*net.UnixConn)
		if !ok {
			return nil, fmt.Errorf("-path %s: not a unix socket", path)
		}
		return mpmc.Receive(uc)
	}
	if key, ok := sysvKey(path); ok {
		return mpmc.OpenSysV(key)
	}
	return mpmc.Open(path)
}

// InspectPath is mpmc.Inspect of any run's Path (or a sysv:0xKEY one).
func InspectPath(path string) (mpmc.Info, error) {
	if key, ok := sysvKey(path); ok {
		return mpmc.InspectSysV(key)
	}
	return mpmc.Inspect(path)
}

// handOver gives a child about to start its end of a socketpair (to pass
// in ExtraFiles) and returns the parent's end.
func handOver() (parent *net.UnixConn, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	pf := os.NewFile(uintptr(fds[0]), "parent")
	c, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "child"), nil
}
