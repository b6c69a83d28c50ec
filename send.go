package mpmc

// Handing a queue over a unix socket: Send and Receive.
//
// One sendmsg(2) carries a fixed 40-byte hand-over header (below, native
// byte order), then the segment's path if it has one, and SCM_RIGHTS with
// the descriptors, in this order: the segment (the file or memfd; for a
// System V segment, its companion lock file), then, if the hand-over
// header's flag 1 is set, the producers' eventfd (notFull) and the
// consumers' eventfd (notEmpty). LAYOUT.md describes the same message for
// programs in other languages.
//
//	offset size
//	0      8    magic handoverMagic ("MPMCSEND" as a little-endian uint64)
//	8      4    version, 1
//	12     4    kind: 0 file, 1 memfd, 2 System V
//	16     4    flags: 1 eventfds follow the segment
//	20     4    number of descriptors
//	24     8    System V shmid (kind 2), else 0
//	32     4    length of the path that follows (at most 4096)
//	36     4    reserved, 0
//
// The receiver validates what it got exactly as Open validates a file,
// through an open file description of its own (memfd.go), and closes every
// descriptor it received on every path, success or failure.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

const (
	handoverMagic   = 0x444E45534D504D4D // "MPMCSEND" read as a little-endian uint64
	handoverVersion = 1
	handoverSize    = 40
	handoverEventfd = 1
	handoverMaxPath = 4096
	handoverMaxFDs  = 3
)

// ErrHandover is returned, wrapped with the reason, by Receive when the
// peer's message is not a queue hand-over (another protocol, a truncated
// message, descriptors missing or extra) or the peer closed the connection
// before finishing it. What was handed over but is no queue is
// ErrBadSegment instead.
var ErrHandover = errors.New("mpmc: bad queue hand-over")

// Send hands the queue to the process at the other end of conn with
// SCM_RIGHTS: the segment's descriptor (a named file's, a memfd's, or a
// System V segment's lock file with its id) and, for a queue made with
// Config.Eventfd, both eventfds. The peer joins with Receive, as a
// participant of its own. Send works for every kind of queue; the handle
// stays usable. It returns ErrClosed after Close.
func (q *Queue) Send(conn *net.UnixConn) error {
	c, err := q.begin()
	if err != nil {
		return err
	}
	defer q.end(c)
	var hdr [handoverSize]byte
	ne := binary.NativeEndian
	ne.PutUint64(hdr[0:], handoverMagic)
	ne.PutUint32(hdr[8:], handoverVersion)
	ne.PutUint32(hdr[12:], uint32(q.seg.kind))
	fds := []int{int(q.seg.f.Fd())}
	if q.events[producers] != nil {
		ne.PutUint32(hdr[16:], handoverEventfd)
		fds = append(fds, q.events[producers].fd, q.events[consumers].fd)
	}
	ne.PutUint32(hdr[20:], uint32(len(fds)))
	if q.seg.kind == kindSysV {
		ne.PutUint64(hdr[24:], uint64(q.seg.shmid))
	}
	path := q.path
	if len(path) > handoverMaxPath {
		path = ""
	}
	ne.PutUint32(hdr[32:], uint32(len(path)))
	msg := append(hdr[:], path...)
	n, oobn, err := conn.WriteMsgUnix(msg, unix.UnixRights(fds...), nil)
	if err != nil {
		return fmt.Errorf("mpmc: send: %w", err)
	}
	if n != len(msg) || oobn == 0 {
		return fmt.Errorf("mpmc: send: short write (%d of %d bytes)", n, len(msg))
	}
	return nil
}

// Receive joins a queue handed over with Send at the other end of conn. The
// segment is validated exactly as Open validates a file (errors wrap
// ErrBadSegment), through an open file description of its own, so that
// this handle's participant lock is its own; a memfd must be sealed
// against shrinking and growing. A message that is not a hand-over, or a
// peer that closes conn before finishing one, is reported with an error
// wrapping ErrHandover (and io.ErrUnexpectedEOF for the latter). Every
// descriptor received is closed before Receive returns, on success and on
// failure.
func Receive(conn *net.UnixConn) (*Queue, error) {
	buf := make([]byte, handoverSize+handoverMaxPath)
	oob := make([]byte, unix.CmsgSpace(4*(handoverMaxFDs+1)))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	fds, perr := parseRights(oob[:oobn])
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the peer closed the connection before handing a queue over: %w", ErrHandover, io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("mpmc: receive: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: the peer closed the connection before handing a queue over: %w", ErrHandover, io.ErrUnexpectedEOF)
	}
	if perr != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandover, perr)
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return nil, fmt.Errorf("%w: more descriptors than a hand-over carries (control message truncated)", ErrHandover)
	}
	// A stream socket may deliver the bytes in pieces; the descriptors
	// come with the first.
	for n < handoverSize {
		m, err := conn.Read(buf[n:handoverSize])
		n += m
		if err != nil && n < handoverSize {
			return nil, fmt.Errorf("%w: the peer closed the connection half-way through the hand-over (%d of %d bytes): %w", ErrHandover, n, handoverSize, io.ErrUnexpectedEOF)
		}
	}
	ne := binary.NativeEndian
	if m := ne.Uint64(buf[0:]); m != handoverMagic {
		return nil, fmt.Errorf("%w: magic %#016x, not a queue hand-over", ErrHandover, m)
	}
	if v := ne.Uint32(buf[8:]); v != handoverVersion {
		return nil, fmt.Errorf("%w: hand-over version %d, this build reads %d", ErrHandover, v, handoverVersion)
	}
	kind, hflags, nfd := segmentKind(ne.Uint32(buf[12:])), ne.Uint32(buf[16:]), ne.Uint32(buf[20:])
	shmid, plen := int64(ne.Uint64(buf[24:])), ne.Uint32(buf[32:])
	if plen > handoverMaxPath {
		return nil, fmt.Errorf("%w: path of %d bytes", ErrHandover, plen)
	}
	for n < handoverSize+int(plen) {
		m, err := conn.Read(buf[n : handoverSize+int(plen)])
		n += m
		if err != nil && n < handoverSize+int(plen) {
			return nil, fmt.Errorf("%w: the peer closed the connection half-way through the hand-over: %w", ErrHandover, io.ErrUnexpectedEOF)
		}
	}
	path := string(buf[handoverSize : handoverSize+int(plen)])
	want := 1
	if hflags&handoverEventfd != 0 {
		want = 3
	}
	if int(nfd) != want || len(fds) != want {
		return nil, fmt.Errorf("%w: %d descriptors received, header says %d, expected %d", ErrHandover, len(fds), nfd, want)
	}
	var evfds [2]int
	if want == 3 {
		for i, fd := range fds[1:] {
			if !isEventfd(fd) {
				return nil, fmt.Errorf("%w: descriptor %d of the hand-over is not an eventfd", ErrBadSegment, i+2)
			}
			evfds[i] = fd
		}
	}
	var seg *segment
	switch kind {
	case kindFile, kindMemfd:
		seg, err = joinFD(fds[0], "receive")
		if err == nil && seg.kind != kind {
			seg.unmap()
			err = fmt.Errorf("mpmc: receive: %w: handed over as a %v segment, the descriptor is a %v", ErrBadSegment, kind, seg.kind)
		}
	case kindSysV:
		seg, err = joinSysVFD(int(shmid), fds[0])
	default:
		return nil, fmt.Errorf("%w: unknown segment kind %d", ErrHandover, kind)
	}
	if err != nil {
		return nil, err
	}
	if seg.flags&segmentEventfd != 0 && want != 3 {
		seg.unmap()
		return nil, fmt.Errorf("mpmc: receive: %w: the segment is eventfd-signalled but no eventfds came with it", ErrBadSegment)
	}
	if kind != kindFile {
		path = ""
	}
	if kind == kindSysV {
		path = sysvName(seg)
	}
	q, err := newQueue(seg, path, -1)
	if err != nil {
		seg.unmap()
		return nil, fmt.Errorf("mpmc: receive: %w", err)
	}
	if seg.flags&segmentEventfd != 0 {
		// The handle keeps the eventfds it received (sharing their
		// open file descriptions with the sender's is the point).
		q.setEventfds(evfds)
		fds = fds[:1]
	}
	return q, nil
}

// parseRights returns the descriptors of every SCM_RIGHTS message in oob.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("unexpected control message (level %d, type %d)", m.Header.Level, m.Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = err
			continue
		}
		for _, fd := range got {
			unix.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

// fdCount returns the number of open descriptors of this process (for
// tests of leaks).
func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory's own
}
