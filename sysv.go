package mpmc

// System V shared-memory segments (CreateSysV, OpenSysV): the same layout
// in a segment made with shmget(2), visible in `ipcs -m` and removable with
// `ipcrm -M KEY` (or RemoveSysV).
//
// A System V segment has no file, and so no OFD locks: the participants'
// liveness comes from a companion lock file, SysVLockPath(key) (under
// /dev/shm), on which every participant locks byte entryOffset(i) exactly
// as it would on a segment file (participants.go); the kernel releases
// those locks when a process dies. The lock file stays empty: OFD locks
// need no bytes. The creator creates and locks it (entry 0) before the
// segment exists, so a joiner that finds the segment without the ready
// marker can tell a creator at work (entry 0 locked) from a dead one.
//
// The segment's size is fixed at creation (no truncation, so none of the
// SIGBUS of a shrunk file); it is validated against the header through
// IPC_STAT (shm_segsz) exactly as a file's size is. The segment outlives
// its processes until it is removed (IPC_RMID): Clean removes one that no
// participant holds and nothing has attached, with its lock file.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	shmHugeTLB        = 0o4000 // SHM_HUGETLB
	madvPopulateWrite = 23     // MADV_POPULATE_WRITE (Linux 5.14)
	sysvLockPrefix    = "mpmc-sysv-"
	sysvLockSuffix    = ".lock"
)

// sysvLockDir is where the lock files live; a variable for tests.
var sysvLockDir = "/dev/shm"

// SysVLockPath returns the path of the lock file of the System V queue
// with key: its participants' liveness locks (see CreateSysV).
func SysVLockPath(key int) string {
	return filepath.Join(sysvLockDir, fmt.Sprintf("%s%08x%s", sysvLockPrefix, uint32(key), sysvLockSuffix))
}

// sysvLockKey returns the key a lock file's name stands for.
func sysvLockKey(name string) (int, bool) {
	hex, ok := strings.CutPrefix(name, sysvLockPrefix)
	if !ok {
		return 0, false
	}
	hex, ok = strings.CutSuffix(hex, sysvLockSuffix)
	if !ok || len(hex) != 8 {
		return 0, false
	}
	k, err := strconv.ParseUint(hex, 16, 32)
	return int(int32(uint32(k))), err == nil
}

// CreateSysV creates a System V shared-memory segment with key (not 0,
// IPC_PRIVATE) holding a new queue with the geometry of cfg, and its lock
// file SysVLockPath(key), and returns a handle on it. Cfg.Perm is the mode
// of both (default 0600). It fails with an error matching fs.ErrExist if a
// segment with key exists or its lock file is in use. The segment's pages
// are allocated up front (MADV_POPULATE_WRITE), so a shortage fails here.
// With cfg.HugePages the segment is made with SHM_HUGETLB. The segment
// stays until it is removed: RemoveSysV, `ipcrm -M key`, or Clean once
// unused.
func CreateSysV(key int, cfg Config) (*Queue, error) {
	if key == unix.IPC_PRIVATE {
		return nil, fmt.Errorf("%w: System V key 0 is IPC_PRIVATE, which no other process can open", ErrInvalidConfig)
	}
	g, flags, err := cfg.check()
	if err != nil {
		return nil, err
	}
	perm := cfg.Perm
	if perm == 0 {
		perm = 0o600
	}
	what := fmt.Sprintf("create System V key %#x", key)
	lockPath := SysVLockPath(key)
	lf, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm.Perm())
	if err != nil {
		return nil, fmt.Errorf("mpmc: %s: lock file: %w", what, err)
	}
	if err := lockParticipant(lf, 0); err != nil {
		lf.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("mpmc: %s: lock file %s in use: %w", what, lockPath, fs.ErrExist)
		}
		return nil, fmt.Errorf("mpmc: %s: %w", what, err)
	}
	shmflg := unix.IPC_CREAT | unix.IPC_EXCL | int(perm.Perm())
	if cfg.HugePages {
		shmflg |= shmHugeTLB
	}
	id, err := unix.SysvShmGet(key, int(g.totalSize), shmflg)
	if err != nil {
		lf.Close()
		switch {
		case errors.Is(err, unix.EEXIST):
			return nil, fmt.Errorf("mpmc: %s: %w", what, fs.ErrExist)
		case cfg.HugePages:
			return nil, fmt.Errorf("mpmc: %s: %w", what, hugeFailure(err, g.totalSize))
		}
		return nil, fmt.Errorf("mpmc: %s: shmget: %w", what, err)
	}
	s := &segment{f: lf, geometry: g, kind: kindSysV, shmid: id}
	fail := func(err error) (*Queue, error) {
		s.unmap()
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		os.Remove(lockPath)
		return nil, fmt.Errorf("mpmc: %s: %w", what, err)
	}
	lf.Chmod(perm.Perm()) // the umask must not narrow it
	if s.mem, err = unix.SysvShmAttach(id, 0, 0); err != nil {
		return fail(fmt.Errorf("shmat: %w", err))
	}
	if len(s.mem) < int(g.totalSize) {
		return fail(fmt.Errorf("shmat mapped %d bytes, need %d", len(s.mem), g.totalSize))
	}
	s.mem = s.mem[:g.totalSize]
	if err := unix.Madvise(s.mem, madvPopulateWrite); err != nil && !errors.Is(err, unix.EINVAL) {
		if cfg.HugePages {
			return fail(hugeFailure(err, g.totalSize))
		}
		return fail(fmt.Errorf("allocate %d bytes: %w", g.totalSize, err))
	}
	s.initHeader(flags)
	q, err := newQueue(s, sysvPath(key), 0)
	if err == nil {
		err = q.withEventfds(cfg)
	}
	if err != nil {
		return fail(err)
	}
	return q, nil
}

// sysvPath is what Path returns for a System V queue.
func sysvPath(key int) string { return fmt.Sprintf("sysv:%#08x", uint32(key)) }

// sysvName is sysvPath of a mapped System V segment.
func sysvName(seg *segment) string {
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(seg.shmid, unix.IPC_STAT, &ds); err != nil {
		return fmt.Sprintf("sysv:shmid=%d", seg.shmid)
	}
	return sysvPath(int(ds.Perm.Key))
}

// OpenSysV joins the System V queue with key. The segment is validated as
// Open validates a file (its size from IPC_STAT), with errors wrapping
// ErrBadSegment; a key with no segment gives an error matching
// fs.ErrNotExist. A segment still being created is waited for briefly.
func OpenSysV(key int) (*Queue, error) {
	what := fmt.Sprintf("open System V key %#x", key)
	seg, err := openSysV(key, what)
	if err != nil {
		return nil, err
	}
	if err := refuseEventfd(seg, what); err != nil {
		return nil, err
	}
	q, err := newQueue(seg, sysvPath(key), -1)
	if err != nil {
		seg.unmap()
		return nil, fmt.Errorf("mpmc: %s: %w", what, err)
	}
	return q, nil
}

func openSysV(key int, what string) (*segment, error) {
	id, err := unix.SysvShmGet(key, 0, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = fs.ErrNotExist
		}
		return nil, fmt.Errorf("mpmc: %s: %w", what, err)
	}
	lf, err := os.OpenFile(SysVLockPath(key), os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mpmc: %s: %w: lock file: %v", what, ErrBadSegment, err)
	}
	return attachSysV(id, lf, what, openInitWait)
}

// joinSysVFD joins the System V segment shmid whose lock file a peer
// handed over as lockFD (Send), through a description of its own.
func joinSysVFD(shmid, lockFD int) (*segment, error) {
	lf, _, err := reopenFD(lockFD)
	if err != nil {
		return nil, fmt.Errorf("mpmc: receive: %w", err)
	}
	return attachSysV(shmid, lf, "receive", 0)
}

// attachSysV validates segment id as mapFile validates a file, with lf as
// its lock file (owned from then on), and maps it.
func attachSysV(id int, lf *os.File, what string, initWait time.Duration) (*segment, error) {
	s := &segment{f: lf, kind: kindSysV, shmid: id}
	fail := func(err error) (*segment, error) {
		s.unmap()
		return nil, fmt.Errorf("mpmc: %s: %w", what, err)
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return fail(fmt.Errorf("IPC_STAT of shmid %d: %w", id, err))
	}
	// The lock file must be the key's: the participants' locks are there.
	if want := SysVLockPath(int(ds.Perm.Key)); !(&segment{f: lf}).isAt(want) {
		return fail(fmt.Errorf("%w: the lock file is not %s, the lock file of the segment's key", ErrBadSegment, want))
	}
	size := ds.Segsz
	if size < headerSize {
		return fail(fmt.Errorf("%w: System V segment is %d bytes, smaller than the %d-byte header", ErrBadSegment, size, headerSize))
	}
	mem, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return fail(fmt.Errorf("shmat: %w", err))
	}
	s.mem = mem
	deadline := time.Now().Add(initWait)
	var hdr [identitySize]byte
	for {
		// The private copy validated, as pread gives for a file.
		copy(hdr[:], mem[:identitySize])
		if r := s.u32(offReady).Load(); r == readyMarker {
			copy(hdr[:], mem[:identitySize])
			break
		}
		if alive, err := participantAlive(lf, 0); err == nil && !alive {
			return fail(fmt.Errorf("%w: System V segment not initialised, and no creator is initialising it", ErrBadSegment))
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("%w: segment never finished initialising (no ready marker after %v)", ErrBadSegment, initWait))
		}
		time.Sleep(time.Millisecond)
	}
	g, err := validateHeader(hdr[:], size)
	if err != nil {
		return fail(err)
	}
	s.geometry = g
	s.mem = mem[:g.totalSize]
	s.flags = nativeFlags(hdr[:])
	return s, nil
}

// RemoveSysV marks the System V segment with key for removal (IPC_RMID:
// it goes once the last process detaches, and no new process can open it)
// and removes its lock file. Handles on it keep working until closed.
func RemoveSysV(key int) error {
	id, err := unix.SysvShmGet(key, 0, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = fs.ErrNotExist
		}
		return fmt.Errorf("mpmc: remove System V key %#x: %w", key, err)
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		return fmt.Errorf("mpmc: remove System V key %#x: %w", key, err)
	}
	if err := os.Remove(SysVLockPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mpmc: remove System V key %#x: lock file: %w", key, err)
	}
	return nil
}

// InspectSysV is Inspect of the System V queue with key.
func InspectSysV(key int) (Info, error) {
	what := fmt.Sprintf("inspect System V key %#x", key)
	seg, err := openSysV(key, what)
	if err != nil {
		return Info{}, err
	}
	defer seg.unmap()
	return inspectSegment(seg, sysvPath(key))
}

// cleanSysV removes the System V queue whose lock file is at p (for key),
// with the lock file, if no participant holds a lock and no process has it
// attached; a lock file whose segment is gone goes too. It reports whether
// it removed anything.
func cleanSysV(p string, key int) (bool, error) {
	lf, err := os.OpenFile(p, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer lf.Close()
	// The whole table, as Clean takes it on a file: joiners wait for us.
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: participantsOffset, Len: maxParticipants * participantSize}
	if err := unix.FcntlFlock(lf.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return false, nil // in use
	}
	if !(&segment{f: lf}).isAt(p) {
		return false, nil // replaced meanwhile
	}
	id, err := unix.SysvShmGet(key, 0, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			return false, err
		}
		return true, os.Remove(p) // the segment is gone already
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return false, err
	}
	if ds.Nattch != 0 {
		return false, nil // attached by a process that is not a participant (an Inspect, or not ours)
	}
	// Ours? Look without attaching for good.
	mem, err := unix.SysvShmAttach(id, 0, unix.SHM_RDONLY)
	if err != nil {
		return false, err
	}
	isQueue := len(mem) >= identitySize && nativeMagic(mem) == segmentMagic
	unix.SysvShmDetach(mem)
	if !isQueue {
		return false, nil
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		return false, err
	}
	return true, os.Remove(p)
}

// ListSysV returns the keys of the System V segments that have an mpmc
// lock file, from /proc/sysvipc/shm.
func ListSysV() ([]int, error) {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return nil, fmt.Errorf("mpmc: list System V segments: %w", err)
	}
	var keys []int
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		k, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || k == 0 {
			continue
		}
		if _, err := os.Lstat(SysVLockPath(int(k))); err == nil {
			keys = append(keys, int(k))
		}
	}
	return keys, nil
}
