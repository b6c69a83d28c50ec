package mpmc

import (
	"bytes"
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
//
// A segment is judged unused, and removed, while Clean holds the locks of
// every entry of its participants table, so no process can join it in
// between: an Open racing with Clean fails with ErrTooManyParticipants.
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
		ok, err := removeIfUnused(p, strings.HasPrefix(e.Name(), tempPrefix))
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
// judges it abandoned.
var tempGrace = 10 * time.Second

// removeIfUnused removes the segment at p if nobody holds any of its
// participant locks. A temporary file of a creator may be blank (its
// creator died before writing the header); any other file must carry the
// segment magic.
func removeIfUnused(p string, temp bool) (bool, error) {
	f, err := os.OpenFile(p, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if os.IsNotExist(err) || os.IsPermission(err) {
			return false, nil // gone, or not ours to judge
		}
		return false, err
	}
	defer f.Close()
	var magic [8]byte
	n, err := f.ReadAt(magic[:], offMagic)
	if err != nil && err != io.EOF {
		return false, err
	}
	isQueue := n == 8 && binary.NativeEndian.Uint64(magic[:]) == segmentMagic
	blank := bytes.Count(magic[:n], []byte{0}) == n
	if !isQueue && !(temp && blank) {
		return false, nil
	}
	if temp {
		// A creator takes its lock a moment after creating the file:
		// leave young files alone.
		if st, err := f.Stat(); err != nil || time.Since(st.ModTime()) < tempGrace {
			return false, nil
		}
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: participantsOffset, Len: maxParticipants * participantSize}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return false, nil // some participant (or creator) is alive
	}
	// Remove the path only if it still names the file we hold.
	if !(&segment{f: f}).isAt(p) {
		return false, nil
	}
	if err := os.Remove(p); err != nil {
		return false, err
	}
	return true, nil
}
