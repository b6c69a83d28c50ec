package mpmc

// The ring: the shared-memory protocol, and all of it. Vyukov's bounded MPMC
// queue, with every claim attributable to the participant that holds it.
// This file owns the positions, the slots, the claim records, recovery, the
// counters and the futex words; it has no goroutines and knows nothing of
// Close (that is the handle's business, mpmc.go and pin.go).
//
// Words (layout.go gives their offsets):
//
//	enqueuePos  bits 62..0: next position producers claim; bit 63: consumers asleep
//	dequeuePos  bits 62..0: next position consumers take;  bit 63: producers asleep
//	slot.seq    bits 63..2: sequence; bit 0: skipped (no message); bit 1: takeover
//	record      one per claim in flight, in the claimant's participant entry:
//	            in use | claim | side | count-1 | position (recordFor)
//
// Position p lives in slot p mod capacity. Positions only grow; sequences
// are compared with seqDiff, a signed difference, so wrap-around is safe.
//
// Transition table. A step is taken by the participant in the "who" column;
// "CAS" is a compare-and-swap that fails harmlessly when someone else moved
// the word first, "store" a release store by the one participant allowed to
// make it. The step names are the comments in the code that make them.
//
//	step  who        word             from               to                 note
//	E1    producer   own record       (idle)             claim(prod, p, n)  before E2, so that E2 publishes it
//	E2    producer   enqueuePos       p | asleep?        p+n                CAS: the claim of p..p+n-1, all with seq == p+i
//	E3    producer   notEmpty futex   v                  v+1, FUTEX_WAKE    only if E2 saw the asleep bit
//	E4    producer   slot p.seq       p                  p+1 | skipped      Shutdown seen after E2: give up
//	E5    producer   slot p payload   -                  message            length and flags too
//	E6    producer   slot p.seq       p                  p+1                store: published
//	E7    producer   own record       claim              idle               after E6 (after the last one, for a batch)
//	D1    consumer   own record       (idle)             claim(cons, p, n)  before D2
//	D2    consumer   dequeuePos       p | asleep?        p+n                CAS: every slot p+i has seq == p+i+1
//	D3    consumer   notFull futex    v                  v+1, FUTEX_WAKE    only if D2 saw the asleep bit
//	D4    consumer   slot p payload   message            (copied out)       nothing for a skipped slot
//	D5    consumer   slot p.seq       p+1 | flags        p+cap              store: free for the next lap
//	D6    consumer   own record       claim              idle               after D5 (the last one)
//	S1    sleeper    other position   x                  x | asleep         atomic OR, then retry (see wait.go)
//	R1    recoverer  slot p.seq       p                  p+1 | skipped      CAS, producer claim of a dead participant
//	R2    recoverer  slot p.seq       p+1 | flags        p+cap              CAS, consumer claim of a dead participant
//	R3    recoverer  slot p.seq       p+1                p+1 | takeover     CAS, Config.Redeliver: copy out, then R2 by store
//
// Invariants:
//
//  1. The claim of a position is the CAS that moves its side's position past
//     it (E2, D2): exactly one participant wins each position, and a position
//     never moves backwards. Nobody helps a position along, and recovery
//     never moves one.
//  2. A claimant records what it claims (E1, D1) before it claims, and clears
//     the record only after its last step on the slots (E7, D6), or at once
//     when its CAS loses (a record must never name a claim that another
//     participant won: it would keep that claim from being recovered). E2 and D2
//     are full barriers, so whoever loads a position that shows p claimed and
//     then reads the records sees the claimant's record for p, until the
//     claimant is done with p. Records of participants that are not alive
//     (participants.go: the kernel lock) prove nothing; join clears the
//     records of an entry it takes.
//  3. Recovery of position p on a side (R1, R2, R3) happens only when no live
//     participant's record covers p, after loading the position that shows p
//     claimed; and it is a CAS from the exact slot word observed. By 2 a live
//     claimant that has not finished with p has a record covering p, so a
//     live process, however slow, is never overtaken; a claimant that did
//     finish moved the slot word on, so the CAS fails. Sequences never repeat,
//     so the CAS can never hit a later lap.
//  4. seq == p: slot free for the producer of p. seq == p+1: published for
//     the consumer of p (skipped: no message; takeover: a recoverer owns it).
//     Only the producer of p (E4, E6) and recovery (R1) move p to p+1; only
//     the consumer of p (D5) and recovery (R2) move p+1 to p+cap. So E6 and
//     D5 need no CAS: while the claimant lives, nobody else writes its slot.
//  5. Wake-ups: a sleeper sets the asleep bit in the other side's position
//     (S1), then retries, then sleeps on its futex word (sampled before S1).
//     The next claim on the other side is a CAS from the word with the bit:
//     it clears the bit and wakes (E3, D3) straight after claiming, before it
//     copies, so that a claimant that dies later still leaves the sleeper
//     awake to notice. A claim made before S1 does not see the bit: S1's
//     result tells the sleeper so, and it then waits in short slices instead
//     of relying on that claimant (wait.go).
//  6. Shutdown: a producer reads the shutdown flag after its claim (E2) and,
//     if set, gives the claim up (E4). A consumer reports the queue drained
//     only when it read the flag set before finding the head unclaimed
//     (enqueuePos at its position). Together: a message whose Enqueue
//     succeeded is never stranded behind a consumer that returned ErrClosed.
//
// A claimant that stalls between E2 and E6 holds up the consumers of its
// positions (and, a lap later, the producers): the queue is not lock-free in
// the strict sense, which is why claims are attributable.
//
// Nothing here trusts shared memory beyond its shape: indexes are masked with
// the private capacity, lengths are checked against the private slot size,
// and a word the protocol cannot produce is reported as ErrBadSegment.

import (
	"fmt"
	"io"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// side is a direction of the queue: its producers or its consumers.
type side uint8

const (
	producers side = iota // enqueue at enqueuePos, sleep on notFull
	consumers             // dequeue at dequeuePos, sleep on notEmpty
)

func (s side) other() side { return 1 - s }

func (s side) String() string {
	if s == producers {
		return "producers"
	}
	return "consumers"
}

const (
	asleepBit = 1 << 63 // in a position word: the other side has sleepers
	posMask   = asleepBit - 1

	seqShift     = 2
	slotSkipped  = 1 // published without a message
	slotTakeover = 2 // a recoverer is copying a dead consumer's message out
	slotFlagMask = 1<<seqShift - 1

	recInUse      = 1 << 63 // the record is taken (pooled records, pin.go)
	recClaim      = 1 << 62 // the record names a claim
	recSideShift  = 61      // the claim's side
	recCountShift = 46      // count-1, 15 bits
	recCountBits  = 15
	recPosMask    = 1<<recCountShift - 1 // position modulo 2^46

	// maxBatch is the most positions one claim may cover.
	maxBatch = 1 << recCountBits
)

func seqWord(seq, flags uint64) uint64 { return seq<<seqShift | flags }

// seqDiff returns the signed distance from position pos to the sequence in
// the slot word w.
func seqDiff(w, pos uint64) int64 { return int64((w>>seqShift-pos)<<seqShift) >> seqShift }

// recordFor is the record of a claim of n positions from pos on side s.
func recordFor(s side, pos uint64, n int) uint64 {
	return recInUse | recClaim | uint64(s)<<recSideShift | uint64(n-1)<<recCountShift | pos&recPosMask
}

// recordCovers reports whether record r names a claim of side s covering
// position pos.
func recordCovers(r uint64, s side, pos uint64) bool {
	if r&recClaim == 0 || side(r>>recSideShift&1) != s {
		return false
	}
	n := r>>recCountShift&(1<<recCountBits-1) + 1
	return (pos-r)&recPosMask < n
}

// slot is the fixed head of every slot; the payload follows it.
type slot struct {
	seq    atomic.Uint64
	length uint32 // payload bytes, written by the producer before E6
	flags  uint32 // flagRedelivered, likewise
	origin uint64 // the position the message was first enqueued at, likewise
}

var _ [slotHeaderSize - unsafe.Sizeof(slot{})]byte // the head is slotHeaderSize bytes
var _ [unsafe.Sizeof(slot{}) - slotHeaderSize]byte

// ring is one mapping of a segment seen through the protocol. Its geometry
// is a private copy, validated once (mmap.go): a peer that rewrites the
// header cannot move our bounds.
type ring struct {
	mem       []byte
	capacity  uint64
	slotSize  uint64
	stride    uint64
	redeliver bool
	pos       [2]*atomic.Uint64 // by side: enqueuePos, dequeuePos
	futex     [2]*atomic.Uint32 // by side: the word that side sleeps on
	sleepers  [2]*[2]atomic.Uint64
	shutdown  *atomic.Uint32
	self      int                           // our participant index; -1 when not joined
	alive     func(index int) (bool, error) // the kernel's word on a participant
	efd       [2]int32                      // by side: the eventfd kick signals besides the futex, or -1 (eventfd.go)
}

func newRing(mem []byte, g geometry, flags uint32, alive func(int) (bool, error)) ring {
	r := ring{mem: mem, capacity: g.capacity, slotSize: g.slotSize, stride: g.slotStride,
		redeliver: flags&segmentRedeliver != 0, self: -1, alive: alive, efd: [2]int32{-1, -1}}
	r.pos[producers], r.pos[consumers] = r.u64(offEnqueuePos), r.u64(offDequeuePos)
	r.futex[producers], r.futex[consumers] = r.u32(offNotFull+sideFutex), r.u32(offNotEmpty+sideFutex)
	r.sleepers[producers] = (*[2]atomic.Uint64)(unsafe.Pointer(r.u64(offNotFull + sideWaiters)))
	r.sleepers[consumers] = (*[2]atomic.Uint64)(unsafe.Pointer(r.u64(offNotEmpty + sideWaiters)))
	r.shutdown = r.u32(offShutdown)
	return r
}

func (r *ring) u32(off uintptr) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&r.mem[off])) }
func (r *ring) u64(off uintptr) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&r.mem[off])) }

func (r *ring) counter(i int) *atomic.Uint64 { return r.u64(offCounters + uintptr(i)*8) }

func (r *ring) slot(pos uint64) *slot {
	return (*slot)(unsafe.Pointer(&r.mem[headerSize+(pos&(r.capacity-1))*r.stride]))
}

func (r *ring) payload(sl *slot) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(sl), slotHeaderSize)), r.slotSize)
}

// record returns record k of participant i.
func (r *ring) record(i, k int) *atomic.Uint64 {
	return r.u64(uintptr(entryOffset(i)) + entryHeadSize + uintptr(k)*recordStride)
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadSegment}, args...)...)
}

// reload re-reads side s's position after a slot showed a sequence ahead of
// pos: by invariant 1 the position has moved on, or shared memory holds
// nonsense.
func (r *ring) reload(s side, pos uint64) (uint64, error) {
	w := r.pos[s].Load()
	if w&posMask == pos {
		return w, corrupt("slot of position %d is ahead of the %s' position", pos, s)
	}
	return w, nil
}

// claim records and makes the claim of n positions from pos on side s,
// where w is the side's position word as loaded (E1-E3, D1-D3): it reports
// whether it won. A loser's record is cleared at once: a record must never
// name a claim another participant won (invariant 2). A winner whose w has
// the asleep bit wakes the other side.
func (r *ring) claim(s side, rec *atomic.Uint64, w, pos uint64, n int) bool {
	storeRelease(rec, recordFor(s, pos, n)) // E1, D1
	hook(hookBeforeClaim)
	if !r.pos[s].CompareAndSwap(w, pos+uint64(n)) { // E2, D2
		storeRelease(rec, recInUse)
		return false
	}
	if w&asleepBit != 0 {
		r.kick(s.other()) // E3, D3
	}
	return true
}

// step ends one look of a batch claim loop that found m positions from pos
// to claim: it claims them, or with none (pos was stale) reloads the
// position. It returns the position word to look again from and whether it
// won the claim.
func (r *ring) step(s side, rec *atomic.Uint64, w, pos uint64, m int) (uint64, bool, error) {
	if m == 0 {
		w, err := r.reload(s, pos)
		return w, false, err
	}
	if !r.claim(s, rec, w, pos, m) {
		return r.pos[s].Load(), false, nil
	}
	return w, true, nil
}

// claim1 is claim for one position without the wake-up (the caller makes
// it): small enough to be inlined on the single-message paths.
func (r *ring) claim1(s side, rec *atomic.Uint64, w, pos uint64) bool {
	storeRelease(rec, recordFor(s, pos, 1)) // E1, D1
	hook(hookBeforeClaim)
	if r.pos[s].CompareAndSwap(w, pos+1) { // E2, D2
		return true
	}
	storeRelease(rec, recInUse)
	return false
}

// enqueue1 enqueues one message (E1-E7): the common case of enqueue, on
// its own for speed.
func (r *ring) enqueue1(rec *atomic.Uint64, msg []byte) error {
	if r.shutdown.Load() != 0 { // model: enqueueSome LOADSHUT
		return ErrClosed
	}
	w := r.pos[producers].Load() // model: claimWrite snapshot (with the slot load below)
	for {
		pos := w & posMask
		sl := r.slot(pos)
		if d := seqDiff(sl.seq.Load(), pos); d != 0 {
			if d < 0 {
				return ErrFull // the slot still holds the previous lap
			}
			var err error
			if w, err = r.reload(producers, pos); err != nil {
				return err
			}
			continue
		}
		if !r.claim1(producers, rec, w, pos) {
			w = r.pos[producers].Load()
			continue
		}
		if w&asleepBit != 0 {
			r.kick(consumers) // E3
		}
		hook(hookEnqueueClaimed)
		if r.shutdown.Load() != 0 { // E4
			storeRelease(&sl.seq, seqWord(pos+1, slotSkipped))
			storeRelease(rec, recInUse)
			return ErrClosed
		}
		r.writeAt(sl, pos, msg, 0, pos) // E5, E6
		storeRelease(rec, recInUse)     // E7
		return nil
	}
}

// dequeue1 takes one message into buf (D1-D6), passing skipped slots: the
// common case of dequeue, on its own for speed.
func (r *ring) dequeue1(rec *atomic.Uint64, buf []byte) (int, error) {
	w := r.pos[consumers].Load() // model: claimRead snapshot (with the slot load below, maxs = 1)
	for {
		pos := w & posMask
		sl := r.slot(pos)
		c := sl.seq.Load()
		if d := seqDiff(c, pos+1); d != 0 {
			if d < 0 {
				return 0, r.emptyAt(pos, c)
			}
			var err error
			if w, err = r.reload(consumers, pos); err != nil {
				return 0, err
			}
			continue
		}
		if uint64(len(buf)) < r.slotSize { // else every message fits
			if n := uint64(sl.length); c&slotSkipped == 0 && n <= r.slotSize && n > uint64(len(buf)) {
				if sl.seq.Load() == c {
					return 0, io.ErrShortBuffer // the message stays queued
				}
				continue
			}
		}
		if !r.claim1(consumers, rec, w, pos) {
			w = r.pos[consumers].Load()
			continue
		}
		if w&asleepBit != 0 {
			r.kick(producers) // D3
		}
		hook(hookDequeueTaken)
		if c&slotSkipped == 0 { // model: D4 and D5 are one step (the slot is the claimant's)
			var err error
			n := uint64(sl.length) // stable now that we hold the claim
			if c&slotTakeover != 0 || n > r.slotSize || n > uint64(len(buf)) {
				err, n = r.badRead(pos, c), 0
			}
			copy(buf, r.payload(sl)[:n]) // D4
			hook(hookDequeueCopied)
			storeRelease(&sl.seq, seqWord(pos+r.capacity, 0)) // D5
			storeRelease(rec, recInUse)                       // D6
			return int(n), err
		}
		storeRelease(&sl.seq, seqWord(pos+r.capacity, 0)) // D5
		storeRelease(rec, recInUse)                       // D6
		r.counter(ctrSkipped).Add(1)
		w = r.pos[consumers].Load()
	}
}

// claimWrite claims up to n free positions at the tail for the producer
// whose record is rec (E1-E4), and returns the first and how many.
func (r *ring) claimWrite(rec *atomic.Uint64, n int) (uint64, int, error) {
	n = min(n, maxBatch, int(r.capacity))
	w := r.pos[producers].Load() // model: claimWrite snapshot (with the slot loads below)
	for {
		pos, m := w&posMask, 0
		for ; m < n; m++ {
			d := seqDiff(r.slot(pos+uint64(m)).seq.Load(), pos+uint64(m))
			if d == 0 {
				continue
			}
			if m == 0 && d < 0 {
				return 0, 0, ErrFull // the slot still holds the previous lap
			}
			break
		}
		var won bool
		var err error
		if w, won, err = r.step(producers, rec, w, pos, m); err != nil || !won {
			if err != nil {
				return 0, 0, err
			}
			continue
		}
		hook(hookEnqueueClaimed)
		if r.shutdown.Load() != 0 { // E4
			for i := range uint64(m) {
				storeRelease(&r.slot(pos+i).seq, seqWord(pos+i+1, slotSkipped))
			}
			storeRelease(rec, recInUse)
			return 0, 0, ErrClosed
		}
		return pos, m, nil
	}
}

// write copies msg into the slot of position pos and publishes it (E5, E6).
// origin is the position where the message was first enqueued: pos, unless
// it is being redelivered.
func (r *ring) write(pos uint64, msg []byte, flags uint32, origin uint64) {
	r.writeAt(r.slot(pos), pos, msg, flags, origin)
}

// writeAt is write for the slot sl of position pos.
func (r *ring) writeAt(sl *slot, pos uint64, msg []byte, flags uint32, origin uint64) {
	if hooksEnabled { // a crash point half-way through the copy
		half := len(msg) / 2
		copy(r.payload(sl), msg[:half])
		hook(hookEnqueueMidCopy)
		copy(r.payload(sl)[half:], msg[half:])
	} else {
		copy(r.payload(sl), msg)
	}
	sl.length = uint32(len(msg))
	sl.flags = flags
	sl.origin = origin
	hook(hookEnqueueBeforePublish)
	storeRelease(&sl.seq, seqWord(pos+1, 0)) // E6 (model: E5 and E6 are one step; E5 is unobservable before E6)
}

// enqueue enqueues msgs[0], or as many of msgs as fit in one claim, in
// order, and returns how many.
func (r *ring) enqueue(rec *atomic.Uint64, msgs [][]byte) (int, error) {
	pos, m, err := r.claimWrite(rec, len(msgs))
	if err != nil {
		return 0, err
	}
	for i := range m {
		r.write(pos+uint64(i), msgs[i], 0, pos+uint64(i))
		if i == 0 {
			hook(hookBatchFirstPublished)
		}
	}
	storeRelease(rec, recInUse) // E7
	return m, nil
}

// claimRead claims the published run at the head for the consumer whose
// record is rec (D1-D3): up to max messages, each fitting its buffer in bufs
// (any size when bufs is nil), and the skipped slots among and before them.
// It returns the first position and how many it claimed; with a claim, the
// error is io.ErrShortBuffer if it stopped at a message too long for its
// buffer, nil otherwise.
func (r *ring) claimRead(rec *atomic.Uint64, bufs [][]byte, max int) (uint64, int, error) {
	w := r.pos[consumers].Load() // model: claimRead snapshot (with the slot loads and emptyAt)
	for {
		pos := w & posMask
		m, k, stop := 0, 0, error(nil)
		for k < max && m < maxBatch {
			sl := r.slot(pos + uint64(m))
			c := sl.seq.Load()
			d := seqDiff(c, pos+uint64(m)+1)
			if d != 0 {
				if m == 0 && d < 0 {
					return 0, 0, r.emptyAt(pos, c)
				}
				break
			}
			if c&slotSkipped == 0 {
				if bufs != nil && uint64(sl.length) <= r.slotSize && int(sl.length) > len(bufs[k]) {
					stop = io.ErrShortBuffer // the message stays queued
					break
				}
				k++
			}
			m++
		}
		if m == 0 && stop != nil {
			return 0, 0, stop
		}
		var won bool
		var err error
		if w, won, err = r.step(consumers, rec, w, pos, m); err != nil || !won {
			if err != nil {
				return 0, 0, err
			}
			continue
		}
		hook(hookDequeueTaken)
		return pos, m, stop
	}
}

// emptyAt tells why the head position pos, whose slot word is c, has nothing
// to take: errPending when a producer claimed it and has not published yet
// (a message is on its way, even after Shutdown), ErrEmpty otherwise.
func (r *ring) emptyAt(pos, c uint64) error {
	if c == seqWord(pos, 0) && r.pos[producers].Load()&posMask > pos { // model: in the claimRead snapshot
		return errPending
	}
	return ErrEmpty
}

// release frees the slot of position pos for the next lap (D5).
func (r *ring) release(pos uint64) {
	storeRelease(&r.slot(pos).seq, seqWord(pos+r.capacity, 0))
}

// badRead is the error for a claimed slot whose word or length the protocol
// cannot produce.
func (r *ring) badRead(pos, c uint64) error {
	if c&slotTakeover != 0 {
		return corrupt("slot of position %d taken over at the head", pos)
	}
	return corrupt("message at position %d claims %d bytes (slot size %d)", pos, r.slot(pos).length, r.slotSize)
}

// dequeue takes up to min(len(bufs), len(sizes)) messages, message i
// copied into bufs[i] and its length stored in sizes[i], and returns how
// many. Skipped slots are passed over.
func (r *ring) dequeue(rec *atomic.Uint64, bufs [][]byte, sizes []int) (int, error) {
	for {
		pos, m, err := r.claimRead(rec, bufs, min(len(bufs), len(sizes)))
		if m == 0 {
			return 0, err
		}
		k, skipped := 0, uint64(0)
		for i := range uint64(m) {
			p := pos + i
			sl := r.slot(p)
			if c := sl.seq.Load(); c&slotSkipped != 0 {
				skipped++
			} else {
				n := uint64(sl.length) // stable now that we hold the claim
				if c&slotTakeover != 0 || n > r.slotSize || n > uint64(len(bufs[k])) {
					if err == nil || err == io.ErrShortBuffer {
						err = r.badRead(p, c)
					}
					n = 0
				}
				sizes[k] = copy(bufs[k], r.payload(sl)[:n]) // D4
				k++
			}
			hook(hookDequeueCopied)
			storeRelease(&sl.seq, seqWord(p+r.capacity, 0)) // D5
		}
		storeRelease(rec, recInUse) // D6
		if skipped > 0 {
			r.counter(ctrSkipped).Add(skipped)
		}
		if k > 0 || err != nil {
			return k, err
		}
		// Only skipped slots: look again.
	}
}

// kick wakes every sleeper of side s, in every process. FUTEX_WAKE never
// blocks, so it is made as a raw system call: a pinned call (pin.go) may make
// it. On a queue with eventfds (Config.Eventfd) it then adds 1 to side s's
// eventfd, for the event loops waiting on it (eventfd.go); that write never
// blocks either (the counter would have to reach 2^64-1).
func (r *ring) kick(s side) {
	r.futex[s].Add(1) // model: kick FADD (the sampled word goes stale)
	r.counter(wakeCounter[s]).Add(1)
	unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(r.futex[s])), futexWake, 1<<31-1, 0, 0, 0) // model: kick FWAKE
	if fd := r.efd[s]; fd >= 0 {
		unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&eventOne)), 8)
	}
}

var (
	wakeCounter  = [2]int{producers: ctrProducerWakes, consumers: ctrConsumerWakes}
	sleepCounter = [2]int{producers: ctrProducerSleeps, consumers: ctrConsumerSleeps}
)

// announce records that side s is about to sleep (S1) and returns the
// other side's position as it was just before: a claim below it was made
// without seeing the announcement, and will not wake s.
func (r *ring) announce(s side) uint64 {
	return r.pos[s.other()].Or(asleepBit) & posMask // model: S1
}

// claimBefore reports whether a claim that predates an announcement made
// when the other side's position was otherPos may hold side s up: such a
// claimant does not wake s, so s must look again by itself.
func (r *ring) claimBefore(s side, otherPos uint64) bool {
	if s == consumers {
		return otherPos > r.pos[consumers].Load()&posMask // model: CB_CONS
	}
	e := r.pos[producers].Load() & posMask // model: CB_PROD
	return e >= r.capacity && otherPos > e-r.capacity
}

// claim names a claim that holds a side up: the side and position of the
// claim, and the slot word observed after the position that shows it claimed.
type claim struct {
	side side
	pos  uint64
	word uint64
}

// heldUpBy returns the claim that holds side s up, if any: for consumers, a
// head position claimed and not published; for producers, the previous lap
// of the tail's slot claimed and not published, or taken and not released.
func (r *ring) heldUpBy(s side) (claim, bool) {
	// model: heldUpBy, its loads as one snapshot
	if s == consumers {
		d := r.pos[consumers].Load() & posMask
		c := r.slot(d).seq.Load()
		if c == seqWord(d, 0) && r.pos[producers].Load()&posMask > d {
			return claim{producers, d, c}, true
		}
		return claim{}, false
	}
	e := r.pos[producers].Load() & posMask
	if e < r.capacity {
		return claim{}, false
	}
	p := e - r.capacity
	c := r.slot(e).seq.Load()
	switch {
	case c == seqWord(p, 0):
		return claim{producers, p, c}, true
	case seqDiff(c, p+1) == 0 && r.pos[consumers].Load()&posMask > p:
		return claim{consumers, p, c}, true
	}
	return claim{}, false
}

// isHeldUp reports whether a claim holds side s up.
func (r *ring) isHeldUp(s side) bool {
	_, held := r.heldUpBy(s)
	return held
}

// heldLive reports whether a live participant's record covers position pos
// of side s. alive caches answers for a sweep, but only "alive": a dead
// participant's entry may be taken at any moment by a new one, whose records
// must not be judged by the old answer. A participant whose liveness cannot
// be told is taken as alive: never take over what may be alive.
func (r *ring) heldLive(s side, pos uint64, alive map[int]bool) bool {
	for i := range maxParticipants {
		covered := false
		for k := range recordsPerEntry {
			if recordCovers(r.record(i, k).Load(), s, pos) { // model: heldLive record load
				covered = true
				break
			}
		}
		if !covered {
			continue
		}
		if i == r.self || alive[i] {
			return true
		}
		if a, err := r.alive(i); err != nil || a { // model: heldLive alive[j]
			if alive != nil {
				alive[i] = true
			}
			return true
		}
	}
	return false
}

// recoverClaim takes over claim cl if no live participant holds it (R1, R2,
// R3; invariant 3). It reports whether it changed the slot and, under
// Config.Redeliver, returns the message of a dead consumer to be enqueued
// again. rec is the caller's own record, needed for R3; nil drops the
// message instead.
func (r *ring) recoverClaim(cl claim, rec *atomic.Uint64, alive map[int]bool) (bool, *redelivery) {
	if r.heldLive(cl.side, cl.pos, alive) {
		return false, nil
	}
	sl := r.slot(cl.pos)
	if cl.side == producers {
		// The producer's Enqueue never returned: no acknowledged message
		// is lost. Consumers pass the skipped slot over.
		if !sl.seq.CompareAndSwap(cl.word, seqWord(cl.pos+1, slotSkipped)) { // R1
			return false, nil
		}
		r.counter(ctrRecoveredWrites).Add(1)
		r.kick(consumers)
		return true, nil
	}
	next := seqWord(cl.pos+r.capacity, 0)
	if !r.redeliver || rec == nil || cl.word&slotFlagMask != 0 {
		if !sl.seq.CompareAndSwap(cl.word, next) { // R2
			return false, nil
		}
		if cl.word&slotSkipped != 0 {
			r.counter(ctrSkipped).Add(1) // passed over half-way by a dead consumer
		} else {
			r.counter(ctrRecoveredReads).Add(1)
		}
		r.kick(producers)
		return true, nil
	}
	// Redelivery: take the claim over as our own, attributably, so that the
	// message cannot change while it is copied, then free the slot.
	storeRelease(rec, recordFor(consumers, cl.pos, 1))         // model: recoverClaim rec[self] before R3
	if !sl.seq.CompareAndSwap(cl.word, cl.word|slotTakeover) { // R3
		storeRelease(rec, recInUse)
		return false, nil
	}
	var msg *redelivery
	if n := uint64(sl.length); n <= r.slotSize && sl.flags&flagRedelivered == 0 {
		msg = &redelivery{append(make([]byte, 0, n), r.payload(sl)[:n]...), sl.origin}
	}
	storeRelease(&sl.seq, next) // R2, by the claim's new owner
	storeRelease(rec, recInUse)
	r.counter(ctrRecoveredReads).Add(1)
	r.kick(producers)
	return true, msg
}

// redelivery is a dead consumer's message to enqueue again, with the
// position where it was first enqueued.
type redelivery struct {
	msg    []byte
	origin uint64
}

// enqueueAgain enqueues a recovered message, marked redelivered (E1-E7).
func (r *ring) enqueueAgain(rec *atomic.Uint64, m *redelivery) error {
	pos, _, err := r.claimWrite(rec, 1)
	if err != nil {
		return err
	}
	r.write(pos, m.msg, flagRedelivered, m.origin)
	storeRelease(rec, recInUse)
	return nil
}

// recoverAll sweeps every claimed position once and recovers the claims of
// dead participants: Open runs it, so a segment whose processes all died
// works again as soon as it is opened. It returns the messages to enqueue
// again (Config.Redeliver).
func (r *ring) recoverAll(rec *atomic.Uint64) []*redelivery {
	// model: Admin (JOIN), recoverAll; the alive cache is not modelled
	alive := map[int]bool{}
	e := r.pos[producers].Load() & posMask
	d := r.pos[consumers].Load() & posMask
	var again []*redelivery
	// Taken and not released: the lap before the head.
	for p := d - min(d, r.capacity); p < d; p++ {
		if c := r.slot(p).seq.Load(); seqDiff(c, p+1) == 0 {
			if _, msg := r.recoverClaim(claim{consumers, p, c}, rec, alive); msg != nil {
				again = append(again, msg)
			}
		}
	}
	// Claimed and not published: between the head and the tail.
	for p := d; p < e && p-d < r.capacity; p++ {
		if c := r.slot(p).seq.Load(); c == seqWord(p, 0) {
			r.recoverClaim(claim{producers, p, c}, rec, alive)
		}
	}
	return again
}

// length returns the number of messages in the ring: positions claimed by
// producers and not yet by consumers, less those skipped. It is a snapshot,
// exact only while nothing is in flight, and costs O(length).
func (r *ring) length() int {
	d := r.pos[consumers].Load() & posMask
	e := r.pos[producers].Load() & posMask
	n := max(0, min(int64(e-d), int64(r.capacity)))
	for pos, end := d, d+uint64(n); pos != end; pos++ {
		if c := r.slot(pos).seq.Load(); c == seqWord(pos+1, slotSkipped) {
			n--
		}
	}
	return int(n)
}

// claimsOf counts the records of participant i that name a claim.
func (r *ring) claimsOf(i int) int {
	n := 0
	for k := range recordsPerEntry {
		if r.record(i, k).Load()&recClaim != 0 {
			n++
		}
	}
	return n
}

// take takes the next message for reading in place (D1-D3), passing skipped
// slots, and returns its position, length and flags. The caller's record then
// names that position alone; the caller releases it (D5, D6).
func (r *ring) take(rec *atomic.Uint64) (uint64, int, uint32, error) {
	for {
		pos, m, err := r.claimRead(rec, nil, 1)
		if m == 0 {
			return 0, 0, 0, err
		}
		last := pos + uint64(m) - 1
		for p := pos; p < last; p++ { // skipped slots before the message
			r.counter(ctrSkipped).Add(1)
			r.release(p)
		}
		sl := r.slot(last)
		c := sl.seq.Load()
		if c&slotSkipped != 0 {
			r.counter(ctrSkipped).Add(1)
			r.release(last)
			storeRelease(rec, recInUse)
			continue
		}
		// Narrow the record to the one position still held.
		storeRelease(rec, recordFor(consumers, last, 1)) // model: ringTake, the narrowing store
		n := uint64(sl.length)
		if c&slotTakeover != 0 || n > r.slotSize {
			r.release(last)
			storeRelease(rec, recInUse)
			return 0, 0, 0, corrupt("message at position %d claims %d bytes (slot size %d)", last, n, r.slotSize)
		}
		return last, int(n), sl.flags, nil
	}
}

// origin returns the position where the message at claimed position pos
// was first enqueued.
func (r *ring) origin(pos uint64) uint64 { return r.slot(pos).origin }
