package mpmc

// Huge pages (Config.HugePages): an anonymous queue's memfd is made with
// MFD_HUGETLB, so that the kernel backs it with huge pages from the
// hugetlb pool (/proc/sys/vm/nr_hugepages) or fails; a named queue on tmpfs
// asks for transparent huge pages with MADV_HUGEPAGE, which tmpfs honours
// for a segment allocated up front (as every segment is) only when
// /sys/kernel/mm/transparent_hugepage/shmem_enabled is always, within_size
// or force ("advise" applies to pages faulted in after the advice, and
// there are none): anything else is refused with ErrNoHugePages rather than
// silently served with small pages. A named queue on a hugetlbfs mount gets
// hugetlb pages like an anonymous one.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoHugePages is returned, wrapped with the reason, by Create,
// CreateAnonymous and CreateSysV with Config.HugePages when the kernel
// cannot back the segment with huge pages: no hugetlb pages reserved (see
// /proc/sys/vm/nr_hugepages), too few free, or transparent huge pages off
// for tmpfs.
var ErrNoHugePages = errors.New("mpmc: no huge pages available")

const hugetlbfsMagic = 0x958458f6

// hugePageSizeOf returns the huge page size of f's file system if it is
// hugetlbfs (a memfd made with MFD_HUGETLB is), and 0 otherwise.
func hugePageSizeOf(f *os.File) uint64 {
	var st unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &st) != nil || st.Type != hugetlbfsMagic {
		return 0
	}
	return uint64(st.Bsize)
}

// hugeFileSize is the size validateHeader compares with the header's for
// file f of size bytes: on hugetlbfs, mapping a file extends it to whole
// huge pages, so a size rounded up from the header's total counts as the
// header's.
func hugeFileSize(f *os.File, hdr []byte, size int64) uint64 {
	hp := hugePageSizeOf(f)
	if hp == 0 || len(hdr) < offTotalSize+8 {
		return uint64(size)
	}
	ts := binary.NativeEndian.Uint64(hdr[offTotalSize:])
	if ts <= uint64(size) && (ts+hp-1)&^(hp-1) == uint64(size) {
		return ts
	}
	return uint64(size)
}

// HugePageSize returns the default huge page size of the system (the
// Hugepagesize line of /proc/meminfo), or 0 if it has none.
func HugePageSize() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Hugepagesize:"); ok {
			var kb int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// hugeFailure turns an allocation failure of a hugetlb segment into
// ErrNoHugePages with the pool's state.
func hugeFailure(err error, size uint64) error {
	if errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w: %d bytes need %d huge pages of %d KiB (%v); free: %s; reserve more in /proc/sys/vm/nr_hugepages",
			ErrNoHugePages, size, hugePagesFor(size), HugePageSize()>>10, err, hugeFree())
	}
	return err
}

func hugePagesFor(size uint64) uint64 {
	hp := uint64(HugePageSize())
	if hp == 0 {
		return 0
	}
	return (size + hp - 1) / hp
}

func hugeFree() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "HugePages_Free:"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return "unknown"
}

// shmemTHP reports whether tmpfs may hand out transparent huge pages to a
// mapping that asks with MADV_HUGEPAGE, and the setting if not.
func shmemTHP() (bool, string) {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
	if err != nil {
		return false, "no transparent huge pages in this kernel"
	}
	s := string(b)
	if i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']'); i >= 0 && j > i {
		s = s[i+1 : j]
	}
	s = strings.TrimSpace(s)
	switch s {
	case "always", "within_size", "force":
		return true, s
	}
	return false, "transparent_hugepage/shmem_enabled is " + s
}

// adviseHuge asks for transparent huge pages on a named segment's mapping
// (tmpfs), or says why it cannot have them.
func (s *segment) adviseHuge() error {
	if ok, why := shmemTHP(); !ok {
		return fmt.Errorf("%w: %s (a named queue on tmpfs gets huge pages only through MADV_HUGEPAGE; use CreateAnonymous for hugetlb pages)", ErrNoHugePages, why)
	}
	if err := unix.Madvise(s.mem, unix.MADV_HUGEPAGE); err != nil {
		return fmt.Errorf("%w: madvise(MADV_HUGEPAGE): %v", ErrNoHugePages, err)
	}
	return nil
}
