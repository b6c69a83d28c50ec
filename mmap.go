package mpmc

// Segment creation, validation and mapping: the file and its mapping. The
// layout is in layout.go, the protocol over it in ring.go.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openInitWait is how long Open waits for a segment that another process is
// still creating. A variable so that fuzz tests need not wait.
var openInitWait = 2 * time.Second

// geometry is everything derived from a Config; it is computed once and then
// compared field by field against what a segment's header says.
type geometry struct {
	capacity   uint64
	slotSize   uint64
	slotStride uint64
	totalSize  uint64
}

func newGeometry(capacity, slotSize uint64) (geometry, error) {
	if capacity < 2 || capacity > maxCapacity || capacity&(capacity-1) != 0 {
		return geometry{}, fmt.Errorf("capacity %d is not a power of two in [2, %d]", capacity, maxCapacity)
	}
	if slotSize < 1 || slotSize > maxSlotSize {
		return geometry{}, fmt.Errorf("slot size %d is not in [1, %d]", slotSize, maxSlotSize)
	}
	stride := (slotHeaderSize + slotSize + slotAlign - 1) &^ (slotAlign - 1)
	hi, total := bits.Mul64(capacity, stride)
	if hi != 0 || total > maxSegment-headerSize {
		return geometry{}, fmt.Errorf("capacity %d x stride %d exceeds the %d-byte segment limit", capacity, stride, uint64(maxSegment))
	}
	return geometry{capacity: capacity, slotSize: slotSize, slotStride: stride, totalSize: headerSize + total}, nil
}

// segment is one mapping of a queue file.
type segment struct {
	f     *os.File // the participants' OFD locks live on this file (see participants.go)
	mem   []byte
	flags uint32 // private copy of the header's flags
	geometry
	// Other backings (memfd.go, sysv.go, hugepages.go).
	kind  segmentKind
	whole []byte // the whole mapping when longer than mem (huge pages); nil otherwise
	shmid int    // kindSysV: the segment's id
}

func (s *segment) u32(off uintptr) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&s.mem[off]))
}

func (s *segment) u64(off uintptr) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&s.mem[off]))
}

// isAt reports whether path still names the file this segment maps.
func (s *segment) isAt(path string) bool {
	var st, pst unix.Stat_t
	return unix.Fstat(int(s.f.Fd()), &st) == nil && unix.Lstat(path, &pst) == nil &&
		st.Ino == pst.Ino && st.Dev == pst.Dev
}

func (s *segment) unmap() error {
	var err error
	if s.mem != nil {
		switch {
		case s.kind == kindSysV:
			err = unix.SysvShmDetach(s.mem)
		case s.whole != nil:
			err = unix.Munmap(s.whole)
		default:
			err = unix.Munmap(s.mem)
		}
		s.mem, s.whole = nil, nil
	}
	if s.f != nil {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
		s.f = nil
	}
	return err
}

// createSegment makes a new queue file at path, sized, reserved and
// initialised, with the creator registered as participant 0.
//
// The segment is built under a temporary name in the same directory and
// linked into place only when complete, so no process ever finds a
// half-built segment at path, a creator that dies half-way leaves nothing
// at path (only its temporary file, which Clean removes), and of several
// processes creating the same path at once exactly one wins: link(2) fails
// with EEXIST for the others.
func createSegment(path string, g geometry, perm os.FileMode, flags uint32) (*segment, error) {
	if perm == 0 {
		perm = 0o600
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("mpmc: create %s: %w", path, fs.ErrExist)
	}
	tmp := tempName(path)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm.Perm())
	if err != nil {
		return nil, fmt.Errorf("mpmc: create %s: %w", path, err)
	}
	// Only the temporary name goes: once linked, the segment lives on at
	// path.
	defer os.Remove(tmp)
	s := &segment{f: f, geometry: g}
	fail := func(err error) (*segment, error) {
		s.unmap()
		return nil, fmt.Errorf("mpmc: create %s: %w", path, err)
	}
	// The umask must not narrow a mode that was asked for explicitly.
	if err := f.Chmod(perm.Perm()); err != nil {
		return fail(err)
	}
	if err := lockParticipant(f, 0); err != nil {
		return fail(err)
	}
	// fallocate both sizes the file and reserves its pages, so that a full
	// /dev/shm fails here with ENOSPC rather than with SIGBUS on first touch.
	// Where it is not supported, the pages are allocated by writing zeros:
	// ftruncate alone would leave holes, which Open refuses (see
	// openSegment).
	if err := fallocate(int(f.Fd()), 0, 0, int64(g.totalSize)); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return fail(fmt.Errorf("reserve %d bytes: %w", g.totalSize, err))
		}
		if err := f.Truncate(int64(g.totalSize)); err != nil {
			return fail(fmt.Errorf("size to %d bytes: %w", g.totalSize, err))
		}
		if err := writeZeros(f, int64(g.totalSize)); err != nil {
			return fail(fmt.Errorf("allocate %d bytes: %w", g.totalSize, err))
		}
	}
	if err := s.mapShared(unix.MAP_POPULATE); err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	s.initHeader(flags)
	// The directory's lock, shared, keeps our link from landing while a
	// Clean has moved the file at path away for a moment (clean.go): we
	// would find path free, and the file Clean then moves back would lose
	// its name. A Clean stuck holding it does not stop us.
	unlock := lockDir(filepath.Dir(path), unix.LOCK_SH, openInitWait)
	err = os.Link(tmp, path)
	if unlock != nil {
		unlock()
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			err = fs.ErrExist // another creator won
		}
		return fail(err)
	}
	return s, nil
}

// initHeader writes the identity block and every slot's first sequence of a
// freshly sized and mapped segment, and publishes the ready marker last:
// Open treats a segment without it as still being built.
func (s *segment) initHeader(flags uint32) {
	g := s.geometry
	m := s.mem
	ne := binary.NativeEndian
	ne.PutUint64(m[offMagic:], segmentMagic)
	ne.PutUint16(m[offVersionMajor:], versionMajor)
	ne.PutUint16(m[offVersionMinor:], versionMinor)
	ne.PutUint32(m[offHeaderSize:], headerSize)
	ne.PutUint32(m[offByteOrder:], byteOrderMark)
	ne.PutUint32(m[offWordSize:], 8)
	ne.PutUint64(m[offCapacity:], g.capacity)
	ne.PutUint64(m[offSlotSize:], g.slotSize)
	ne.PutUint64(m[offSlotStride:], g.slotStride)
	ne.PutUint64(m[offTotalSize:], g.totalSize)
	ne.PutUint64(m[offCreatedNano:], uint64(time.Now().UnixNano()))
	ne.PutUint64(m[offCreatorPid:], uint64(os.Getpid()))
	ne.PutUint32(m[offMaxParticipants:], maxParticipants)
	ne.PutUint32(m[offParticipantSize:], participantSize)
	ne.PutUint64(m[offParticipants:], participantsOffset)
	ne.PutUint32(m[offFlags:], flags)
	s.flags = flags
	// Slot i starts its life free for position i (sequence i, state free).
	for i := uint64(0); i < g.capacity; i++ {
		s.u64(uintptr(headerSize + i*g.slotStride + slotSeq)).Store(seqWord(i, 0))
	}
	hook(hookCreateBeforeReady)
	// Published last: Open treats a segment without it as still being built.
	s.u32(offReady).Store(readyMarker)
}

// fallocate is unix.Fallocate; a variable so that tests can make it fail
// with EOPNOTSUPP.
var fallocate = unix.Fallocate

// writeZeros allocates every block of f's first size bytes by writing zeros
// over them (pwrite, 1 MiB at a time).
func writeZeros(f *os.File, size int64) error {
	zeros := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size; {
		n, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off)
		if err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// tempPrefix starts the name of a segment still being built (see
// createSegment); tempName returns such a name for path.
const tempPrefix = ".mpmc-creating-"

func tempName(path string) string {
	var r [6]byte
	rand.Read(r[:])
	return filepath.Join(filepath.Dir(path), fmt.Sprintf("%s%d-%x-%s", tempPrefix, os.Getpid(), r, filepath.Base(path)))
}

// openSegment maps an existing queue file after validating its header. The
// header is read with pread into private memory and validated there; the
// geometry used afterwards is that private copy, never re-read from shared
// memory, so a peer that rewrites the header later cannot move our bounds.
func openSegment(path string) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ELOOP):
			err = fmt.Errorf("%w: is a symbolic link", ErrBadSegment)
		case errors.Is(err, unix.EISDIR):
			err = fmt.Errorf("%w: is a directory", ErrBadSegment)
		}
		return nil, fmt.Errorf("mpmc: open %s: %w", path, err)
	}
	return mapFile(f, "open "+path, openInitWait)
}

// mapFile is openSegment's validation and mapping of an open file f, which
// it owns from then on (closed on failure): also used for descriptors
// received or inherited (memfd.go, send.go). what names the call in errors;
// initWait is how long a segment still being created is waited for.
func mapFile(f *os.File, what string, initWait time.Duration) (*segment, error) {
	s := &segment{f: f}
	fail := func(err error) (*segment, error) {
		s.unmap()
		return nil, fmt.Errorf("mpmc: %s: %w", what, err)
	}
	deadline := time.Now().Add(initWait)
	var hdr [identitySize]byte
	for {
		st, err := f.Stat()
		if err != nil {
			return fail(err)
		}
		if !st.Mode().IsRegular() {
			return fail(fmt.Errorf("%w: not a regular file (%v)", ErrBadSegment, st.Mode().Type()))
		}
		size := st.Size()
		var magic uint64
		var ready uint32
		if size >= int64(len(hdr)) {
			if _, err := f.ReadAt(hdr[:], 0); err != nil {
				// Shrunk since the stat: not a segment we can use.
				return fail(fmt.Errorf("%w: read header: %v", ErrBadSegment, err))
			}
			magic = binary.NativeEndian.Uint64(hdr[offMagic:])
			ready = binary.NativeEndian.Uint32(hdr[offReady:])
		}
		// A creator sizes the file in one step, then writes the header and
		// publishes the ready marker last: an empty file, or one whose
		// header is blank or ours but not ready, may still be in the making.
		initialising := size == 0 || (size >= int64(len(hdr)) && (magic == 0 || magic == segmentMagic) && ready != readyMarker)
		if initialising {
			// The creator holds entry 0's lock from before it sizes
			// the file: if nobody holds it, nobody is building this.
			if alive, err := participantAlive(f, 0); err == nil && !alive {
				switch {
				case size == 0:
					return fail(fmt.Errorf("%w: empty file, and no creator is initialising it", ErrBadSegment))
				case magic == 0:
					return fail(fmt.Errorf("%w: blank header, and no creator is initialising it", ErrBadSegment))
				}
				return fail(fmt.Errorf("%w: abandoned half-built segment (its creator, pid %d, died while initialising it)",
					ErrBadSegment, binary.NativeEndian.Uint64(hdr[offCreatorPid:])))
			}
		}
		if initialising && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		switch {
		case size == 0:
			return fail(fmt.Errorf("%w: empty file (its creator never sized it)", ErrBadSegment))
		case size < headerSize:
			return fail(fmt.Errorf("%w: file is %d bytes, smaller than the %d-byte header", ErrBadSegment, size, headerSize))
		case magic == segmentMagic && ready != readyMarker:
			return fail(fmt.Errorf("%w: segment never finished initialising (no ready marker after %v)", ErrBadSegment, initWait))
		}
		if s.geometry, err = validateHeader(hdr[:], hugeFileSize(f, hdr[:], size)); err != nil {
			return fail(err)
		}
		// A file whose pages are holes (sized with ftruncate alone) must
		// not be mapped: every access to a hole faults, and on tmpfs even
		// a read allocates a page, so the join sweep would fill the file
		// system, or die of SIGBUS on one smaller than the file.
		if alloc := st.Sys().(*syscall.Stat_t).Blocks * 512; alloc < size {
			return fail(fmt.Errorf("%w: sparse file: %d of %d bytes allocated (its creator must allocate every page, with fallocate(2) or by writing it)",
				ErrBadSegment, alloc, size))
		}
		s.flags = binary.NativeEndian.Uint32(hdr[offFlags:])
		break
	}
	if err := s.mapShared(0); err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	return s, nil
}

// mapShared maps s.f's first totalSize bytes (rounded up to the file's huge
// page size on hugetlbfs, where mappings must be whole huge pages: s.whole).
func (s *segment) mapShared(extraFlags int) error {
	length := s.totalSize
	if hp := hugePageSizeOf(s.f); hp > 0 {
		length = (length + hp - 1) &^ (hp - 1)
	}
	m, err := unix.Mmap(int(s.f.Fd()), 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|extraFlags)
	if err != nil {
		return err
	}
	s.mem = m[:s.totalSize]
	if length != s.totalSize {
		s.whole = m
	}
	return nil
}

// validateHeader checks a private copy of the identity block against the
// file size and returns the geometry it describes. Every refusal wraps
// ErrBadSegment with the reason.
func validateHeader(h []byte, fileSize uint64) (geometry, error) {
	ne := binary.NativeEndian
	bad := func(format string, args ...any) (geometry, error) {
		return geometry{}, fmt.Errorf("%w: "+format, append([]any{ErrBadSegment}, args...)...)
	}
	if m := ne.Uint64(h[offMagic:]); m != segmentMagic {
		if m == bits.ReverseBytes64(segmentMagic) {
			return bad("written by a machine of the other byte order")
		}
		return bad("wrong magic %#016x, not an mpmc queue", m)
	}
	if bo := ne.Uint32(h[offByteOrder:]); bo != byteOrderMark {
		return bad("byte-order mark %#08x: written by a machine of the other byte order", bo)
	}
	if ws := ne.Uint32(h[offWordSize:]); ws != 8 {
		return bad("word size %d, this build needs 8", ws)
	}
	if major, minor := ne.Uint16(h[offVersionMajor:]), ne.Uint16(h[offVersionMinor:]); major != versionMajor {
		return bad("layout version %d.%d, this build reads %d.x", major, minor, versionMajor)
	}
	if r := ne.Uint32(h[offReady:]); r != readyMarker {
		return bad("ready marker %#08x unset: segment not initialised", r)
	}
	if hs := ne.Uint32(h[offHeaderSize:]); hs != headerSize {
		return bad("header size %d, expected %d", hs, headerSize)
	}
	if mp, ps, po := ne.Uint32(h[offMaxParticipants:]), ne.Uint32(h[offParticipantSize:]), ne.Uint64(h[offParticipants:]); mp != maxParticipants || ps != participantSize || po != participantsOffset {
		return bad("participants table %d x %d at %#x, expected %d x %d at %#x", mp, ps, po, maxParticipants, participantSize, participantsOffset)
	}
	g, err := newGeometry(ne.Uint64(h[offCapacity:]), ne.Uint64(h[offSlotSize:]))
	if err != nil {
		return bad("impossible geometry: %v", err)
	}
	if st := ne.Uint64(h[offSlotStride:]); st != g.slotStride {
		return bad("slot stride %d, expected %d for slot size %d", st, g.slotStride, g.slotSize)
	}
	if ts := ne.Uint64(h[offTotalSize:]); ts != g.totalSize {
		return bad("header says %d bytes, geometry needs %d", ts, g.totalSize)
	}
	if fileSize != g.totalSize {
		return bad("file is %d bytes, header says %d (truncated or extended)", fileSize, g.totalSize)
	}
	return g, nil
}
