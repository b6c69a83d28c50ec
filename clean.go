package mpmc

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Clean removes from directory dir (for example /dev/shm) the queue
// segments that no process uses, and the temporary files of creators that
// died before finishing a segment, and returns the paths it removed. Files
// that are not queue segments are left alone, and so is every segment with a
// live participant. A file it cannot judge or remove is reported in the
// returned error (one per file, joined), and the others are still cleaned.
// A System V queue's lock file (SysVLockPath) stands for its segment: both
// go (IPC_RMID) when no participant holds a lock and no process has the
// segment attached, and the lock file alone when its segment is gone; the
// lock file's path is what is returned.
//
// A segment is judged unused, and removed, while Clean holds the locks of
// every entry of its participants table, so no process can join it in
// between: an Open racing with Clean waits for it (up to 2 s, then fails
// with ErrBusy), and then joins the segment if Clean left it, or fails with
// an error matching fs.ErrNotExist if Clean removed it.
// Clean never unlinks a path without checking what it names at that moment:
// the path is moved to a private name first, and a file that is not the one
// judged (the segment was removed and created again meanwhile) is moved
// back at once.
func Clean(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("mpmc: clean %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		var ok bool
		var err error
		if key, isLock := sysvLockKey(e.Name()); isLock {
			ok, err = cleanSysV(p, key) // a System V queue's lock file (sysv.go)
		} else {
			ok, err = removeIfUnused(p, kindOf(e.Name()))
		}
		if err != nil {
			// Say so, and go on with the others.
			errs = append(errs, fmt.Errorf("mpmc: clean %s: %w", p, err))
			continue
		}
		if ok {
			removed = append(removed, p)
		}
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// tempGrace is how old a creator's temporary file must be before Clean
// judges it abandoned; so too a file left under a cleaner's private name.
var tempGrace = 10 * time.Second

// cleanPrefix starts the private name under which Clean holds a file while
// it checks that it is the one it judged unused (see removeVerified): the
// process id, random hex, and the file's own name.
const cleanPrefix = ".mpmc-cleaning-"

// fileKind says what a file's name makes of it.
type fileKind int

const (
	plainFile    fileKind = iota // a segment's own name
	creatingFile                 // tempPrefix: a creator's temporary file
	cleaningFile                 // cleanPrefix: held by a Clean, or left by one that died
)

func kindOf(name string) fileKind {
	switch {
	case strings.HasPrefix(name, tempPrefix):
		return creatingFile
	case strings.HasPrefix(name, cleanPrefix):
		return cleaningFile
	}
	return plainFile
}

// verdict is what Clean makes of an open file.
type verdict int

const (
	notOurs verdict = iota // not a queue segment (or not old enough to judge)
	inUse                  // some participant, or a creator, holds a lock
	unused                 // nobody does: the whole table is now locked by us
)

// judge looks at the open file f. A temporary file of a creator (or a file
// under a cleaner's private name) may be blank: its creator died before
// writing the header; such files are judged only once older than tempGrace
// (by ctime: renaming a file sets it). On unused, f holds the lock of the
// whole participants table until it is closed, so that nobody can join in
// between.
func judge(f *os.File, kind fileKind) (verdict, error) {
	var magic [8]byte
	n, err := f.ReadAt(magic[:], offMagic)
	if err != nil && err != io.EOF {
		return notOurs, err
	}
	isQueue := n == 8 && binary.NativeEndian.Uint64(magic[:]) == segmentMagic
	blank := bytes.Count(magic[:n], []byte{0}) == n
	if !isQueue && !(kind != plainFile && blank) {
		return notOurs, nil
	}
	if kind != plainFile {
		// A creator takes its lock a moment after creating the file,
		// and a live Clean moves a file back at once: leave young files
		// alone.
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || time.Since(time.Unix(st.Ctim.Unix())) < tempGrace {
			return notOurs, nil
		}
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: participantsOffset, Len: maxParticipants * participantSize}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return inUse, nil // some participant (or creator) is alive
	}
	return unused, nil
}

// removeIfUnused removes the file at p if it is a segment (or a creator's
// temporary file) nobody holds any participant lock of. A live segment left
// under a private name by a Clean that died is moved back to its own name.
// A file found to have replaced the one judged is judged in turn.
func removeIfUnused(p string, kind fileKind) (bool, error) {
	for round := 1; ; round++ {
		ok, err := removeIfUnusedOnce(p, kind)
		if err != errReplaced {
			return ok, err
		}
		if round == cleanRounds {
			return false, nil // replaced again and again: in use, surely
		}
	}
}

func removeIfUnusedOnce(p string, kind fileKind) (bool, error) {
	f, err := os.OpenFile(p, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if os.IsNotExist(err) || os.IsPermission(err) {
			return false, nil // gone, or not ours to judge
		}
		return false, err
	}
	defer f.Close()
	v, err := judge(f, kind)
	if err != nil || v == notOurs {
		return false, err
	}
	if v == inUse {
		if kind == cleaningFile {
			return false, restoreName(p)
		}
		return false, nil
	}
	// The path still names the file we hold (this shrinks the window;
	// removeVerified closes it).
	if !(&segment{f: f}).isAt(p) {
		return false, nil
	}
	if cleanHook != nil {
		cleanHook(cleanDecided, p)
	}
	return removeVerified(f, p)
}

// removeVerified removes path p, which named the file f (locked whole, and
// judged unused) a moment ago. The path may have been replaced since (the
// segment removed and created again), and unlinking it by name could then
// remove a live segment: so p is first moved to a private name (a rename
// is atomic, and the private name is ours alone), and the file found there
// is unlinked only if it is f. Another file is moved back at once (the path
// names nothing meanwhile), and removeVerified returns errReplaced: the
// caller judges that file at its path like any other.
func removeVerified(f *os.File, p string) (bool, error) {
	// While the path names nothing, no Create may link a new segment
	// there (it would find the path free, and we could not move back a
	// file in use): creators take the directory's lock shared around their
	// link(2), and we take it exclusive.
	unlock := lockDir(filepath.Dir(p), unix.LOCK_EX, cleanDirWait)
	if unlock == nil {
		return false, nil // creators keep the directory busy: next time
	}
	defer unlock()
	priv := privateName(p)
	if err := unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, priv, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // removed meanwhile by someone else
		}
		return false, fmt.Errorf("move to %s: %w", priv, err)
	}
	if cleanHook != nil {
		cleanHook(cleanMoved, p)
	}
	if sameFile(f, priv) {
		if err := unix.Unlink(priv); err != nil {
			return false, fmt.Errorf("remove (moved to %s): %w", priv, err)
		}
		return true, nil
	}
	if err := unix.Renameat2(unix.AT_FDCWD, priv, unix.AT_FDCWD, p, unix.RENAME_NOREPLACE); err != nil {
		return false, fmt.Errorf("another file replaced %s while it was being cleaned, and cannot be moved back from %s (%w): it must be renamed by hand",
			p, priv, err)
	}
	return false, errReplaced
}

// cleanDirWait bounds how long Clean waits for the directory lock (see
// lockDir) before it leaves a file for another time.
var cleanDirWait = 100 * time.Millisecond

// lockDir takes flock(2) lock how (unix.LOCK_SH or unix.LOCK_EX) on
// directory dir, retrying for up to wait, and returns the function that
// drops it; nil if the directory cannot be opened or the lock is not
// granted in time. It orders a creator's link(2) (shared) against the
// moment a Clean has moved the file at a path away (exclusive).
func lockDir(dir string, how int, wait time.Duration) func() {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Microsecond) {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) } // closing drops the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) || time.Now().After(deadline) {
			unix.Close(fd)
			return nil
		}
	}
}

// errReplaced says that the path being cleaned was found to name another
// file than the one judged, and was left as it is.
var errReplaced = errors.New("replaced while being cleaned")

// cleanRounds bounds how many times Clean judges one path again after
// finding it replaced.
const cleanRounds = 3

// sameFile reports whether path names the file f has open.
func sameFile(f *os.File, path string) bool { return (&segment{f: f}).isAt(path) }

// privateName returns a fresh private name for p in p's directory:
// cleanPrefix, our pid, random hex, then p's own name if it fits.
func privateName(p string) string {
	var r [6]byte
	rand.Read(r[:])
	name := fmt.Sprintf("%s%d-%x-", cleanPrefix, os.Getpid(), r)
	if base := filepath.Base(p); len(name)+len(base) <= 255 {
		name += base
	}
	return filepath.Join(filepath.Dir(p), name)
}

// restoreName moves a file in use, left at private name p by a Clean that
// died before it could move it back, to its own name again.
func restoreName(p string) error {
	parts := strings.SplitN(strings.TrimPrefix(filepath.Base(p), cleanPrefix), "-", 3)
	if len(parts) != 3 || parts[2] == "" {
		return fmt.Errorf("in use, left by a cleaner under a private name that does not say its own")
	}
	orig := filepath.Join(filepath.Dir(p), parts[2])
	if err := unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, orig, unix.RENAME_NOREPLACE); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("in use, left by a cleaner under a private name, and cannot be moved back to %s (%w): it must be renamed by hand", orig, err)
	}
	return nil
}

// settleAt reports whether path names the file s maps, waiting (up to
// wait) while the file is under a cleaner's private name: a Clean moves a
// file in use back at once.
func (s *segment) settleAt(path string, wait time.Duration) bool {
	for deadline := time.Now().Add(wait); ; time.Sleep(time.Millisecond) {
		if s.isAt(path) {
			return true
		}
		if !s.underCleaningName(filepath.Dir(path)) {
			return s.isAt(path) // it may have been put back meanwhile
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// underCleaningName reports whether s's file is in dir under a cleaner's
// private name.
func (s *segment) underCleaningName(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), cleanPrefix) && s.isAt(filepath.Join(dir, e.Name())) {
			return true
		}
	}
	return false
}

// cleanStep names a step of Clean's removal of one file, for cleanHook.
type cleanStep int

const (
	cleanDecided cleanStep = iota // judged unused, whole table locked, not moved yet
	cleanMoved                    // moved to its private name, not verified yet
)

// cleanHook, set by tests only (never while Clean runs), is called at each
// cleanStep with the path being cleaned.
var cleanHook func(step cleanStep, path string)
