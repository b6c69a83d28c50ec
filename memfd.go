package mpmc

// Anonymous segments (memfd) and joining from a descriptor.
//
// An anonymous queue lives in a memfd: it has no name in any file system,
// it is sealed against shrinking and growing (then against further seals),
// so no peer can truncate it under the others (the SIGBUS trap of a named
// file), and it is gone when the last descriptor and mapping of it are.
// Other processes join it with a descriptor: handed over a unix socket
// (Send, Receive: send.go) or inherited (File, OpenFile).
//
// One open file description per participant. A participant's liveness is
// an OFD lock on its entry's byte (participants.go), held by an open file
// description: a descriptor passed with SCM_RIGHTS, inherited, or dup'ed
// shares the sender's description, and with it the sender's locks. So a
// joiner never uses the descriptor it was given: it opens
// /proc/self/fd/N, which for a memfd (and for any regular file) makes a new
// open file description of the same inode, takes its own entry's lock on
// that one, and closes what it was given (Receive) or leaves it to its
// owner (OpenFile). (An eventfd cannot be reopened that way, ENXIO: which
// is fine, eventfds carry no lock.)

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// segmentKind is what backs a segment.
type segmentKind uint8

const (
	kindFile  segmentKind = iota // a named file (Create, Open)
	kindMemfd                    // a sealed memfd (CreateAnonymous)
	kindSysV                     // a System V segment with its lock file (sysv.go)
)

func (k segmentKind) String() string {
	switch k {
	case kindMemfd:
		return "memfd"
	case kindSysV:
		return "sysv"
	}
	return "file"
}

// requiredSeals are the seals a memfd segment must carry.
const requiredSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// memfdName is the name of every anonymous segment's memfd, as
// /proc/PID/fd shows it ("/memfd:mpmc (deleted)").
const memfdName = "mpmc"

// CreateAnonymous creates a new queue in a memfd with the geometry of cfg
// and returns a handle on it, the first participant. The segment has no
// name in any file system; it is sealed against shrinking and growing
// (F_SEAL_SHRINK, F_SEAL_GROW, then F_SEAL_SEAL), so that no process can
// truncate it under the others; and it is gone when the last process that
// holds it (a descriptor or a mapping) lets go. Other processes join it
// with Receive (hand it over with Send) or OpenFile (pass it with File).
// Cfg.Perm is the memfd's mode (default 0600), which decides who may
// reopen it. With cfg.HugePages the memfd is made with MFD_HUGETLB.
func CreateAnonymous(cfg Config) (*Queue, error) {
	g, flags, err := cfg.check()
	if err != nil {
		return nil, err
	}
	seg, err := createMemfd(g, cfg.Perm, flags, cfg.HugePages)
	if err != nil {
		return nil, fmt.Errorf("mpmc: create anonymous: %w", err)
	}
	q, err := newQueue(seg, "", 0)
	if err == nil {
		err = q.withEventfds(cfg)
	}
	if err != nil {
		seg.unmap()
		return nil, err
	}
	return q, nil
}

func createMemfd(g geometry, perm os.FileMode, flags uint32, huge bool) (*segment, error) {
	mfd := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	if huge {
		mfd |= unix.MFD_HUGETLB
	}
	fd, err := unix.MemfdCreate(memfdName, mfd)
	if err != nil {
		if huge {
			return nil, fmt.Errorf("%w: memfd_create(MFD_HUGETLB): %v", ErrNoHugePages, err)
		}
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	s := &segment{f: os.NewFile(uintptr(fd), "memfd:"+memfdName), geometry: g, kind: kindMemfd}
	fail := func(err error) (*segment, error) {
		s.unmap()
		return nil, err
	}
	if perm == 0 {
		perm = 0o600
	}
	if err := s.f.Chmod(perm.Perm()); err != nil {
		return fail(err)
	}
	if err := lockParticipant(s.f, 0); err != nil {
		return fail(err)
	}
	if err := fallocate(fd, 0, 0, int64(g.totalSize)); err != nil {
		if huge {
			return fail(hugeFailure(err, g.totalSize))
		}
		return fail(fmt.Errorf("reserve %d bytes: %w", g.totalSize, err))
	}
	if err := s.mapShared(unix.MAP_POPULATE); err != nil {
		if huge {
			return fail(hugeFailure(err, g.totalSize))
		}
		return fail(fmt.Errorf("mmap: %w", err))
	}
	s.initHeader(flags)
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, requiredSeals); err != nil {
		return fail(fmt.Errorf("seal: %w", err))
	}
	return s, nil
}

// ErrNoEventfd is returned by Open and OpenFile for a queue created with
// Config.Eventfd: a participant without the queue's eventfds could not
// signal them, and an event loop waiting on them would miss its wake-ups.
// Join such a queue with Receive.
var ErrNoEventfd = errors.New("mpmc: queue signals eventfds: join it with Receive")

// refuseEventfd refuses (and unmaps) a segment that needs eventfds the
// caller does not have.
func refuseEventfd(seg *segment, what string) error {
	if seg.flags&segmentEventfd == 0 {
		return nil
	}
	seg.unmap()
	return fmt.Errorf("mpmc: %s: %w", what, ErrNoEventfd)
}

// reopenFD makes a new open file description of the segment that
// descriptor fd refers to (see the top of this file), after checking that
// it is a regular file and, for a memfd, that it carries requiredSeals.
// fd itself is left as it is.
func reopenFD(fd int) (*os.File, segmentKind, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, fmt.Errorf("%w: fstat descriptor %d: %v", ErrBadSegment, fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, 0, fmt.Errorf("%w: descriptor %d is not a regular file or memfd (%s)", ErrBadSegment, fd, fileType(st.Mode))
	}
	link := "/proc/self/fd/" + strconv.Itoa(fd)
	target, _ := os.Readlink(link)
	kind := kindFile
	if strings.HasPrefix(target, "/memfd:") {
		kind = kindMemfd
		seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: memfd seals: %v", ErrBadSegment, err)
		}
		if seals&requiredSeals != requiredSeals {
			return nil, 0, fmt.Errorf("%w: memfd not sealed against shrinking and growing (seals %#x, need %#x): a peer could truncate it",
				ErrBadSegment, seals, requiredSeals)
		}
	}
	nfd, err := unix.Open(link, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("reopen descriptor %d (%s) for a description of our own: %w", fd, target, err)
	}
	var nst unix.Stat_t
	if err := unix.Fstat(nfd, &nst); err != nil || nst.Ino != st.Ino || nst.Dev != st.Dev {
		unix.Close(nfd)
		return nil, 0, fmt.Errorf("%w: reopening descriptor %d gave another file", ErrBadSegment, fd)
	}
	return os.NewFile(uintptr(nfd), target), kind, nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a pipe"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}

// joinFD validates and maps the segment descriptor fd refers to, through a
// description of its own, exactly as Open validates a file.
func joinFD(fd int, what string) (*segment, error) {
	f, kind, err := reopenFD(fd)
	if err != nil {
		return nil, fmt.Errorf("mpmc: %s: %w", what, err)
	}
	// The sender handed over a ready segment: nothing to wait for.
	seg, err := mapFile(f, what, 0)
	if err != nil {
		return nil, err
	}
	seg.kind = kind
	return seg, nil
}

// File returns a new descriptor of the queue's segment (a named file or a
// memfd) for a child process: put it in exec.Cmd.ExtraFiles, and have the
// child join with OpenFile. The descriptor shares this handle's open file
// description, and with it this handle's participant lock: close it once
// the child has started (after exec.Cmd.Start), or a child that outlives
// this process keeps this handle's participant alive. A queue made with
// Config.Eventfd cannot be passed this way (its eventfds would not follow,
// and os/exec makes the descriptions of ExtraFiles blocking): pass one end
// of a socketpair instead and Send over the other. System V segments have
// no descriptor: File returns errors.ErrUnsupported; join them with
// OpenSysV.
func (q *Queue) File() (*os.File, error) {
	c, err := q.begin()
	if err != nil {
		return nil, err
	}
	defer q.end(c)
	if q.seg.kind == kindSysV {
		return nil, fmt.Errorf("mpmc: file of a System V segment: %w", errors.ErrUnsupported)
	}
	if q.seg.flags&segmentEventfd != 0 {
		return nil, fmt.Errorf("mpmc: file: %w (pass it with Send)", ErrNoEventfd)
	}
	fd, err := unix.FcntlInt(q.seg.f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mpmc: file: %w", err)
	}
	return os.NewFile(uintptr(fd), q.seg.f.Name()), nil
}

// OpenFile joins the queue whose segment f refers to (a descriptor from
// File, inherited through exec.Cmd.ExtraFiles: os.NewFile(3, "queue") in
// the child). It validates the segment exactly as Open validates a file and
// refuses a memfd that is not sealed against shrinking and growing, with
// errors wrapping ErrBadSegment. The handle works on an open file
// description of its own (reopened through /proc/self/fd), so f stays the
// caller's to close, at once if it likes.
func OpenFile(f *os.File) (*Queue, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("mpmc: open file: %w", err)
	}
	var seg *segment
	cerr := sc.Control(func(fd uintptr) { seg, err = joinFD(int(fd), "open file "+f.Name()) })
	if cerr != nil {
		return nil, fmt.Errorf("mpmc: open file: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	if err := refuseEventfd(seg, "open file "+f.Name()); err != nil {
		return nil, err
	}
	path := ""
	if seg.kind == kindFile {
		path = seg.f.Name()
	}
	q, err := newQueue(seg, path, -1)
	if err != nil {
		seg.unmap()
		return nil, fmt.Errorf("mpmc: open file %s: %w", f.Name(), err)
	}
	return q, nil
}

// openProcFD maps the segment a /proc/PID/fd/N magic link names (an
// anonymous queue held by process PID), for Inspect.
func openProcFD(path string) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mpmc: open %s: %w", path, err)
	}
	seg, err := mapFile(f, "open "+path, 0)
	if err == nil {
		seg.kind = kindMemfd
	}
	return seg, err
}

// ListAnonymous returns, for every anonymous queue segment some process
// holds (that this process may look at), one /proc/PID/fd/N path to it,
// for Inspect.
func ListAnonymous() ([]string, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("mpmc: list anonymous queues: %w", err)
	}
	seen := map[uint64]bool{}
	var out []string
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link := dir + "/" + fd.Name()
			target, err := os.Readlink(link)
			if err != nil || !strings.HasPrefix(target, "/memfd:"+memfdName+" ") {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(link, &st) != nil || seen[st.Ino] {
				continue
			}
			seen[st.Ino] = true
			out = append(out, link)
		}
	}
	return out, nil
}
