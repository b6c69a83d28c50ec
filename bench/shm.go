package main

// Names of the shared-memory files and message queues the harness makes, and
// their cleanup: every name is registered when made and removed when done,
// on a signal, and at exit; stale names of dead harness processes are swept
// at start.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

const shmPrefix = "mpmcbench-"

var (
	nameSeq   atomic.Uint64
	cleanupMu sync.Mutex
	cleanups  = map[string]func(){}
)

// newName returns a name unique to this process, for a file under /dev/shm
// or a POSIX message queue.
func newName(kind string) string {
	return fmt.Sprintf("%s%d-%s-%d", shmPrefix, os.Getpid(), kind, nameSeq.Add(1))
}

// shmPath returns a new unique path under /dev/shm and registers it for
// removal.
func shmPath(kind string) string {
	p := filepath.Join("/dev/shm", newName(kind))
	register(p, func() { os.Remove(p) })
	return p
}

// register records a cleanup to run unless done runs first.
func register(key string, f func()) {
	cleanupMu.Lock()
	cleanups[key] = f
	cleanupMu.Unlock()
}

// done runs the cleanup of key now, once.
func done(key string) {
	cleanupMu.Lock()
	f := cleanups[key]
	delete(cleanups, key)
	cleanupMu.Unlock()
	if f != nil {
		f()
	}
}

// cleanupAll runs every cleanup still registered.
func cleanupAll() {
	cleanupMu.Lock()
	fs := cleanups
	cleanups = map[string]func(){}
	cleanupMu.Unlock()
	for _, f := range fs {
		f()
	}
}

// sweepStale removes /dev/shm files and message queues left by harness
// processes that no longer exist.
func sweepStale() {
	for _, dir := range []string{"/dev/shm", "/dev/mqueue"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			rest, ok := strings.CutPrefix(e.Name(), shmPrefix)
			if !ok {
				continue
			}
			pidStr, _, _ := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
				continue
			}
			if dir == "/dev/mqueue" {
				mqUnlink(e.Name())
			} else {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// newQueue creates an mpmc queue of capacity slots of slotSize bytes at a
// new /dev/shm path (q.Path()); remove closes it and removes its file.
func newQueue(kind string, capacity, slotSize int) (q *mpmc.Queue, remove func(), err error) {
	path := shmPath(kind)
	if q, err = mpmc.Create(path, mpmc.Config{Capacity: capacity, SlotSize: slotSize}); err != nil {
		done(path)
		return nil, nil, err
	}
	return q, func() { q.Close(); done(path) }, nil
}

// newRef creates a reference queue of capacity slots at a new /dev/shm path
// (q.path); remove unmaps it and removes its file.
func newRef(kind string, capacity int) (q *refQueue, remove func(), err error) {
	path := shmPath(kind)
	if q, err = createRef(path, capacity); err != nil {
		done(path)
		return nil, nil, err
	}
	return q, func() { q.close(); done(path) }, nil
}

// mapFile maps the file at path read-write and MAP_SHARED. With size > 0 it
// first creates the file, which must not exist, with that size; with size 0
// it maps the existing file whole.
func mapFile(path string, size int) ([]byte, error) {
	flag := os.O_RDWR
	if size > 0 {
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > 0 {
		err = f.Truncate(int64(size))
	} else if st, serr := f.Stat(); serr != nil {
		err = serr
	} else {
		size = int(st.Size())
	}
	if err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return mem, nil
}
