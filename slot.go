package mpmc

// The slot protocol: Vyukov's bounded MPMC queue, with every claim
// attributable to the participant that holds it.
//
// Each slot starts with one 64-bit control word, ctl:
//
//	bits 63..13  seq    the position this slot currently serves, modulo 2^51
//	bits 12..10  state  free, writing, full, reading or skipped
//	bits  9..0   owner  participant index + 1 while writing or reading, else 0
//
// followed by the payload length (uint32 at +8), flags (uint32 at +12:
// flagRedelivered) and the payload (at +16).
//
// Positions are 64-bit counters that only grow: enqueuePos is the next
// position a producer may claim, dequeuePos the next one a consumer may take.
// Position p lives in slot p mod capacity. Sequences are compared with
// seqDiff, a signed difference in the 51-bit domain, so wrap-around is safe.
//
// Invariants (s = slot p mod capacity):
//
//  1. ctl changes by compare-and-swap, so each change is made by exactly one
//     participant, and it always names the position it refers to; except
//     that the owner of a claim moves it on (publish, release) with a
//     release store, since nobody else may change a claimed word while its
//     owner lives (invariant 5 takes over only claims of the dead).
//  2. s.seq == p, free: p is not yet claimed; the producer whose CAS moves it
//     to (p, writing, me) owns position p. Nobody else writes the payload or
//     the length of s until the owner moves it on.
//  3. (p, writing, o) -> (p, full, 0) is done only by owner o, after the
//     payload and length are written: a consumer that sees full sees the
//     whole message.
//  4. (p, full) -> (p, reading, me) by the one consumer whose CAS wins; it
//     alone copies the message out, then makes the slot (p+capacity, free, 0):
//     free for the producer of the next lap.
//  5. A claimed slot (writing or reading) records its owner in the same word
//     as the claim, so a claim of a participant that died can be found and
//     undone (writing -> skipped, reading -> next lap) without guessing.
//     Consumers pass over (p, skipped) by moving it to (p+capacity, free).
//  6. enqueuePos (dequeuePos) moves from p to p+1 only by CAS, and only after
//     the slot of p has been claimed (taken, or found skipped); any
//     participant that finds p claimed helps to advance it, and recovery
//     advances it for a claimant that died before doing so. Each of these
//     happens before the slot moves on to its next lap. So positions never
//     move backwards and never skip an unclaimed slot, and once s.seq > p the
//     position is past p.
//  7. Shutdown: a producer re-reads the shutdown flag after its claim and,
//     if set, gives the claim up as skipped instead of publishing. A consumer
//     reports the queue drained only when it read the flag set before finding
//     the head unclaimed. Together: a message whose Enqueue succeeded is
//     never stranded behind a consumer that already returned ErrClosed.
//
// A claimer that stalls between claim and publish blocks the consumers of
// that position (and, a lap later, the producers): the queue is not
// lock-free in the strict sense, which is why claims must be attributable.
//
// Nothing here trusts shared memory beyond its shape: indexes are masked with
// the private capacity, lengths are checked against the private slot size,
// and a state that the protocol cannot produce is reported as ErrBadSegment.

import (
	"fmt"
	"io"
	"sync/atomic"
	"unsafe"
)

const (
	stateFree    = 0
	stateWriting = 1
	stateFull    = 2
	stateReading = 3
	stateSkipped = 4

	ownerBits = 10
	stateBits = 3
	seqShift  = ownerBits + stateBits
	ownerMask = 1<<ownerBits - 1
	stateMask = 1<<stateBits - 1
)

// slot is the fixed head of every slot; the payload follows it.
type slot struct {
	ctl    atomic.Uint64
	length uint32 // payload bytes, written by the owner before publishing
	flags  uint32 // flagRedelivered, written likewise
}

// flagRedelivered marks a message that a dead consumer had taken and that
// recovery enqueued again; it is not redelivered a second time.
const flagRedelivered = 1

func packCtl(seq, state, owner uint64) uint64 {
	return seq<<seqShift | state<<ownerBits | owner
}

func ctlState(c uint64) uint64 { return c >> ownerBits & stateMask }
func ctlSeq(c uint64) uint64   { return c >> seqShift }
func ctlOwner(c uint64) uint64 { return c & ownerMask }

// seqDiff returns the signed distance from position pos to the sequence in
// ctl, computed in the 51-bit sequence domain.
func seqDiff(ctl, pos uint64) int64 {
	return int64(ctl&^(1<<seqShift-1)-pos<<seqShift) >> seqShift
}

func (s *segment) slot(pos uint64) *slot {
	return (*slot)(unsafe.Pointer(&s.mem[headerSize+(pos&(s.capacity-1))*s.slotStride]))
}

func (s *segment) payload(sl *slot) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(sl), slotHeaderSize)), s.slotSize)
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadSegment}, args...)...)
}

// enqueue claims the next position, copies msg into its slot and publishes
// it. It returns ErrFull when the slot of the next position still holds a
// message of the previous lap.
func (q *Queue) enqueue(msg []byte, flags uint32) error {
	pos := q.enqueuePos.Load()
	for {
		sl := q.seg.slot(pos)
		c := sl.ctl.Load()
		d := seqDiff(c, pos)
		switch {
		case d == 0 && ctlState(c) == stateFree:
			claimed := packCtl(pos, stateWriting, q.owner)
			if !sl.ctl.CompareAndSwap(c, claimed) {
				continue // another producer won pos; look again
			}
			hook(hookEnqueueClaimed)
			q.enqueuePos.CompareAndSwap(pos, pos+1)
			if q.shutdown.Load() != 0 {
				// Shutdown came between our first look and the
				// claim. A consumer may already have concluded the
				// queue is drained, so this message must not be
				// published: give the position up as skipped.
				if !sl.ctl.CompareAndSwap(claimed, packCtl(pos, stateSkipped, 0)) {
					return corrupt("claim of position %d was taken over while its owner was alive", pos)
				}
				q.notEmpty.wake()
				return ErrClosed
			}
			if testHook.Load() != nil { // a crash point half-way through the copy
				half := len(msg) / 2
				copy(q.seg.payload(sl), msg[:half])
				hook(hookEnqueueMidCopy)
				copy(q.seg.payload(sl)[half:], msg[half:])
			} else {
				copy(q.seg.payload(sl), msg)
			}
			sl.length = uint32(len(msg))
			sl.flags = flags
			hook(hookEnqueueBeforePublish)
			// Only the owner may move a claim on (invariant 3): a
			// release store suffices, no compare-and-swap.
			storeRelease(&sl.ctl, packCtl(pos, stateFull, 0))
			q.notEmpty.wake()
			return nil
		case d == 0 && ctlState(c) <= stateSkipped:
			// pos is claimed by another producer: help it along.
			q.enqueuePos.CompareAndSwap(pos, pos+1)
			pos++
		case d == 0:
			return corrupt("slot of position %d in state %d", pos, ctlState(c))
		case d < 0:
			return ErrFull
		default:
			// Our pos is stale: invariant 6 says enqueuePos has moved on.
			next := q.enqueuePos.Load()
			if next-pos-1 >= 1<<62 { // next <= pos, in wrap-safe form
				return corrupt("slot sequence ahead of enqueue position %d", pos)
			}
			pos = next
		}
	}
}

// dequeue takes the message at the next position. It returns ErrEmpty when
// that position is not published yet, and io.ErrShortBuffer, leaving the
// message queued, when buf cannot hold it.
func (q *Queue) dequeue(buf []byte) (int, error) {
	pos := q.dequeuePos.Load()
	for {
		sl := q.seg.slot(pos)
		c := sl.ctl.Load()
		d := seqDiff(c, pos)
		switch {
		case d == 0 && ctlState(c) == stateFull:
			if n := uint64(sl.length); n <= q.seg.slotSize && n > uint64(len(buf)) {
				if sl.ctl.Load() == c {
					return 0, io.ErrShortBuffer
				}
				continue
			}
			taken := packCtl(pos, stateReading, q.owner)
			if !sl.ctl.CompareAndSwap(c, taken) {
				continue
			}
			hook(hookDequeueTaken)
			q.dequeuePos.CompareAndSwap(pos, pos+1)
			// The length is stable now (invariant 2 and 4); check it
			// again since a misbehaving peer could have changed it.
			n := uint64(sl.length)
			var err error
			if n > q.seg.slotSize || n > uint64(len(buf)) {
				err = corrupt("message at position %d claims %d bytes (slot size %d)", pos, n, q.seg.slotSize)
				n = 0
			}
			copy(buf[:n], q.seg.payload(sl))
			hook(hookDequeueCopied)
			storeRelease(&sl.ctl, packCtl(pos+q.seg.capacity, stateFree, 0)) // invariant 4
			q.notFull.wake()
			return int(n), err
		case d == 0 && ctlState(c) == stateSkipped:
			// A dead producer's claim (see recover.go): pass over it.
			// The head moves first, as for a taken slot (invariant 6):
			// a consumer that then sees the slot's next lap on a stale
			// position is certain to find the head already past it.
			q.dequeuePos.CompareAndSwap(pos, pos+1)
			if sl.ctl.CompareAndSwap(c, packCtl(pos+q.seg.capacity, stateFree, 0)) {
				q.counter(ctrSkipped).Add(1)
				q.notFull.wake()
			}
			pos++
		case d == 0 && ctlState(c) == stateReading:
			q.dequeuePos.CompareAndSwap(pos, pos+1)
			pos++
		case d == 0 && ctlState(c) > stateSkipped:
			return 0, corrupt("slot of position %d in state %d", pos, ctlState(c))
		case d == 0 && ctlState(c) == stateWriting:
			// Claimed, not yet published: a message is on its way,
			// even after Shutdown.
			return 0, errPending
		case d <= 0:
			// Not yet claimed (free for pos, or still the previous
			// lap): nothing to take at pos.
			return 0, ErrEmpty
		default:
			next := q.dequeuePos.Load()
			if next-pos-1 >= 1<<62 {
				return 0, corrupt("slot sequence ahead of dequeue position %d", pos)
			}
			pos = next
		}
	}
}
