package mpmc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Info describes a queue segment as seen from outside, without joining it.
type Info struct {
	Path         string
	VersionMajor int
	VersionMinor int
	Capacity     int
	SlotSize     int
	SlotStride   int
	FileSize     int64
	Created      time.Time
	CreatorPid   int
	Stats        Stats // positions and counters; Len is a snapshot
	// SleepingConsumers and SleepingProducers are the participant indexes
	// recorded as sleeping on each side.
	SleepingConsumers []int
	SleepingProducers []int
	Participants      []Participant // entries that are not free
}

// Participant is one entry of a segment's participants table.
type Participant struct {
	Index      int
	Pid        int
	StartTicks uint64 // process start time, clock ticks since boot
	Joined     time.Time
	Generation uint64 // how many times the entry has been taken
	// Alive is true while the entry's kernel lock is held: false means the
	// process that took it has died without leaving.
	Alive bool
	// Joining is true for an entry whose lock is held but whose fields are
	// not written yet: a process in the middle of Open.
	Joining bool
	// HeldElsewhere is true for an entry whose lock is held although the
	// process it names (Pid, StartTicks) is gone: exited, a zombie, or its
	// pid reused by a later process. The participant is its open file
	// description, which lives on in another process (a child forked
	// without exec, or one the descriptor was passed to): it stays Alive,
	// and its claims are not recovered, until every process holding that
	// open file description has closed it or died. Only meaningful when
	// Inspect runs in the participant's pid namespace.
	HeldElsewhere bool
	// Claims counts the claims this participant's records name right now
	// (a batch claim counts once).
	Claims int
}

// Inspect validates the segment at path like Open does and reports its
// header, positions, counters and participants, without registering as a
// participant (so it works on a segment whose table is full).
//
// An anonymous queue (a memfd) can be inspected through a process that
// holds it: path /proc/PID/fd/N (see ListAnonymous); a System V one with
// InspectSysV.
func Inspect(path string) (Info, error) {
	var seg *segment
	var err error
	if strings.HasPrefix(path, "/proc/") {
		seg, err = openProcFD(path) // a magic link: O_NOFOLLOW would refuse it
	} else {
		seg, err = openSegment(path)
	}
	if err != nil {
		return Info{}, err
	}
	defer seg.unmap()
	return inspectSegment(seg, path)
}

// inspectSegment is Inspect of a mapped segment; path names it in errors.
func inspectSegment(seg *segment, path string) (Info, error) {
	ne := binary.NativeEndian
	m := seg.mem
	info := Info{
		Path:         path,
		VersionMajor: int(ne.Uint16(m[offVersionMajor:])),
		VersionMinor: int(ne.Uint16(m[offVersionMinor:])),
		Capacity:     int(seg.capacity),
		SlotSize:     int(seg.slotSize),
		SlotStride:   int(seg.slotStride),
		FileSize:     int64(seg.totalSize),
		Created:      time.Unix(0, int64(ne.Uint64(m[offCreatedNano:]))),
		CreatorPid:   int(ne.Uint64(m[offCreatorPid:])),
	}
	// A ring that is never joined: enough for Stats, the bitmaps and the
	// claim records.
	r := newRing(seg.mem, seg.geometry, seg.flags, func(i int) (bool, error) { return participantAlive(seg.f, i) })
	info.Stats = r.stats()
	for i := range maxParticipants {
		if r.sleepers[consumers][i/64].Load()&(1<<(i%64)) != 0 {
			info.SleepingConsumers = append(info.SleepingConsumers, i)
		}
		if r.sleepers[producers][i/64].Load()&(1<<(i%64)) != 0 {
			info.SleepingProducers = append(info.SleepingProducers, i)
		}
	}
	for i := range maxParticipants {
		off := uintptr(entryOffset(i))
		state := seg.u32(off + entryState).Load()
		alive, err := participantAlive(seg.f, i)
		if err != nil {
			return Info{}, fmt.Errorf("mpmc: inspect %s: lock of participant %d: %w", path, i, err)
		}
		if state == entryFree && !alive && r.claimsOf(i) == 0 {
			continue
		}
		pt := Participant{
			Index:      i,
			Pid:        int(seg.u64(off + entryPid).Load()),
			StartTicks: seg.u64(off + entryStartTicks).Load(),
			Joined:     time.Unix(0, int64(seg.u64(off+entryJoinedNano).Load())),
			Generation: seg.u64(off + entryGeneration).Load(),
			Alive:      alive,
			Joining:    alive && state != entryActive,
			Claims:     r.claimsOf(i),
		}
		pt.HeldElsewhere = alive && state == entryActive && pt.Pid > 0 && processGone(pt.Pid, pt.StartTicks)
		info.Participants = append(info.Participants, pt)
	}
	return info, nil
}

// processGone reports whether process pid, started at start clock ticks
// after boot (0: unknown), no longer runs: /proc/pid is gone, the process
// is a zombie, or the pid now names a process that started at another time.
// It says false when it cannot tell.
func processGone(pid int, start uint64) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// field 3 is the state, field 22 the start time.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) <= 22-3 {
		return false
	}
	if st := fields[0]; len(st) == 1 && (st[0] == 'Z' || st[0] == 'X') {
		return true
	}
	t, err := strconv.ParseUint(string(fields[22-3]), 10, 64)
	return err == nil && start != 0 && t != start
}
