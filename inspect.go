package mpmc

import (
	"encoding/binary"
	"fmt"
	"time"
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
	// Claims counts the claims this participant's records name right now
	// (a batch claim counts once).
	Claims int
}

// Inspect validates the segment at path like Open does and reports its
// header, positions, counters and participants, without registering as a
// participant (so it works on a segment whose table is full).
func Inspect(path string) (Info, error) {
	seg, err := openSegment(path)
	if err != nil {
		return Info{}, err
	}
	defer seg.unmap()
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
		info.Participants = append(info.Participants, Participant{
			Index:      i,
			Pid:        int(seg.u64(off + entryPid).Load()),
			StartTicks: seg.u64(off + entryStartTicks).Load(),
			Joined:     time.Unix(0, int64(seg.u64(off+entryJoinedNano).Load())),
			Generation: seg.u64(off + entryGeneration).Load(),
			Alive:      alive,
			Joining:    alive && state != entryActive,
			Claims:     r.claimsOf(i),
		})
	}
	return info, nil
}
