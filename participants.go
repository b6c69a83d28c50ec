package mpmc

// The participants table: who holds the claims recorded in slots.
//
// Entry i (participantSize bytes at participantsOffset + participantSize*i:
// a head of 64 bytes, then the participant's claim records, ring.go)
// belongs to whoever holds an open-file-description lock (F_OFD_SETLK) on
// byte participantsOffset+participantSize*i of the segment file. The kernel
// releases that lock when the last file descriptor of the holder's open
// file description closes, which happens when its process dies however it
// dies, unless another process holds that description too (a child forked
// without exec, a descriptor passed on): the participant is its open file
// description, not its process. So:
//
//   - an entry is taken by locking its byte; the lock, not the entry's
//     contents, is what makes it ours;
//   - a participant is alive exactly while its byte is locked;
//   - an entry whose contents say "active" but whose byte nobody locks was
//     left by a dead process, and may be taken over.
//
// The pid and process start time written into the entry identify the holder
// for people (stress inspect) and survive pid reuse; liveness never depends
// on them. Each handle opens the file itself, so two handles in one process
// are two participants with two locks.
//
// Entry layout:
//
//	+0  state      uint32  0 free, 1 active
//	+4  reserved   uint32
//	+8  pid        int64
//	+16 startTicks uint64  process start time, clock ticks since boot
//	+24 joinedNano int64   unix nanoseconds when the entry was taken
//	+32 generation uint64  incremented each time the entry is taken

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const (
	entryState      = 0
	entryPid        = 8
	entryStartTicks = 16
	entryJoinedNano = 24
	entryGeneration = 32

	entryFree   = 0
	entryActive = 1
)

func entryOffset(i int) int64 { return participantsOffset + int64(i)*participantSize }

// lockParticipant takes the lock of entry i without waiting.
func lockParticipant(f *os.File, i int) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: entryOffset(i), Len: 1}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// participantAlive reports whether some open file description holds the lock
// of entry i. f must be a descriptor that does not hold it itself.
func participantAlive(f *os.File, i int) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: entryOffset(i), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}

// refusedBy looks at the lock that refused entry i: whole if it spans the
// whole participants table (a cleaner's, clean.go, not a participant's),
// gone if it was dropped by the time we looked.
func refusedBy(f *os.File, i int) (whole, gone bool, err error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: entryOffset(i), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, false, err
	}
	if lk.Type == unix.F_UNLCK {
		return false, true, nil
	}
	const end = participantsOffset + maxParticipants*participantSize
	return lk.Start <= participantsOffset && (lk.Len == 0 || lk.Start+lk.Len >= end), false, nil
}

// join takes entry index, or the first entry it can lock if index < 0.
// While a cleaner holds the whole table, it waits (up to openInitWait).
func (q *Queue) join(index int) error {
	f := q.seg.f
	i := index
	if i < 0 {
		deadline := time.Now().Add(openInitWait)
	scan:
		for {
			for i = 0; i < maxParticipants; i++ {
				err := lockParticipant(f, i)
				if err == nil {
					break scan
				}
				if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
					return fmt.Errorf("lock participant entry %d: %w", i, err)
				}
				whole, gone, err := refusedBy(f, i)
				if err != nil {
					return fmt.Errorf("lock participant entry %d: %w", i, err)
				}
				if gone && time.Now().Before(deadline) {
					i-- // its holder just left: try it again
					continue
				}
				if whole {
					if time.Now().After(deadline) {
						return fmt.Errorf("%w: participants table held whole by a cleaner for %v", ErrBusy, openInitWait)
					}
					time.Sleep(time.Millisecond)
					continue scan
				}
			}
			break // every entry held by a participant
		}
		if i == maxParticipants {
			return fmt.Errorf("%w: %d live handles", ErrTooManyParticipants, maxParticipants)
		}
	} // else the creator locked it before sizing the file.
	hook(hookJoinLocked)
	off := uintptr(entryOffset(i))
	// The previous holder's claim records prove nothing now (ring.go,
	// invariant 2), and would be taken for ours: clear them first.
	for k := range recordsPerEntry {
		q.ring.record(i, k).Store(0) // model: Admin join rec[self] = 0
	}
	if q.seg.u32(off+entryState).Load() != entryFree {
		// The previous holder died without leaving.
		q.ring.counter(ctrParticipantsReclaimed).Add(1)
	}
	start, _ := procStartTicks(os.Getpid())
	q.seg.u64(off + entryPid).Store(uint64(os.Getpid()))
	q.seg.u64(off + entryStartTicks).Store(start)
	q.seg.u64(off + entryJoinedNano).Store(uint64(time.Now().UnixNano()))
	q.seg.u64(off + entryGeneration).Add(1)
	q.seg.u32(off + entryState).Store(entryActive)
	q.self = i
	return nil
}

// leave marks the entry free; closing the file then drops the lock.
func (q *Queue) leave() {
	for i := range q.wait {
		w := &q.wait[i]
		q.ring.sleepers[w.side][w.word].And(^w.bit)
	}
	for k := range recordsPerEntry {
		q.ring.record(q.self, k).Store(0)
	}
	off := uintptr(entryOffset(q.self))
	q.seg.u32(off + entryState).Store(entryFree)
	q.seg.u64(off + entryPid).Store(0)
}

// procStartTicks returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/pid/stat): with the pid, it names a process
// uniquely even when pids are reused.
func procStartTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := bytes.Fields(b[i+1:])
	const startField = 22 - 3 // fields after ")" start at field 3
	if len(fields) <= startField {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(string(fields[startField]), 10, 64)
}
