package mpmc

// The segment layout, derived in one place. Every offset is from the start
// of the segment; every multi-byte field is in the creating machine's byte
// order (checked on Open) and naturally aligned. LAYOUT.md describes the
// same layout for programs written in other languages; the constant
// assertions at the end of this file fail the build if the two drift apart
// in the ways LAYOUT.md relies on.
//
//	offset    size        field
//	0x00000   128         identity: magic, version, geometry, creation, ready
//	                      marker, shutdown flag
//	0x00080   128         enqueuePos: next position producers claim (bit 63:
//	                      consumers are asleep)
//	0x00100   128         dequeuePos: next position consumers take (bit 63:
//	                      producers are asleep)
//	0x00180   128         notEmpty: futex u32 (consumers sleep on it), sleeper
//	                      bitmap [2]u64 (who sleeps, for Inspect)
//	0x00200   128         notFull: likewise, for producers
//	0x00280   384         counters: rare events (sleeps, wake-ups, recoveries)
//	0x00400   3072        reserved
//	0x01000   128 x 4096  participants: per entry a 64-byte head (pid, ...)
//	                      and 63 claim records of 64 bytes each
//	0x81000   cap x stride slots
//
// The hot words (the two positions, each wait side, each claim record) sit
// on lines of their own, 128 bytes apart where two processes write them, so
// that no cache line or adjacent-line prefetch pair is shared.

import (
	"encoding/binary"
	"unsafe"
)

const (
	segmentMagic  = 0x434D504D514D4853 // "SHMQMPMC" read as a little-endian uint64
	versionMajor  = 2
	versionMinor  = 0
	byteOrderMark = 0x01020304
	readyMarker   = 0x59444552 // "REDY"

	cacheLine = 64
	hotStride = 128 // two lines: no adjacent-line prefetch sharing

	// Identity block.
	offMagic           = 0x00 // uint64
	offVersionMajor    = 0x08 // uint16
	offVersionMinor    = 0x0A // uint16
	offHeaderSize      = 0x0C // uint32: offset of the first slot
	offByteOrder       = 0x10 // uint32: byteOrderMark as written by the creator
	offWordSize        = 0x14 // uint32: 8
	offCapacity        = 0x18 // uint64
	offSlotSize        = 0x20 // uint64
	offSlotStride      = 0x28 // uint64
	offTotalSize       = 0x30 // uint64: file size
	offCreatedNano     = 0x38 // int64: unix nanoseconds
	offCreatorPid      = 0x40 // int64
	offMaxParticipants = 0x48 // uint32
	offParticipantSize = 0x4C // uint32
	offParticipants    = 0x50 // uint64: offset of the participants table
	offReady           = 0x58 // uint32: readyMarker once the segment is usable
	offShutdown        = 0x5C // uint32: non-zero once Shutdown was called
	offFlags           = 0x60 // uint32: segmentRedeliver; unknown bits are ignored
	identitySize       = 0x64 // bytes of the identity block that Open validates

	offEnqueuePos = identityBlock
	offDequeuePos = offEnqueuePos + hotStride
	offNotEmpty   = offDequeuePos + hotStride
	offNotFull    = offNotEmpty + hotStride
	offCounters   = offNotFull + hotStride
	countersSize  = 384

	identityBlock = 128

	// Within a wait side.
	sideFutex   = 0x00 // uint32, bumped by every wake-up
	sideWaiters = 0x08 // [2]uint64: bit i set while participant i sleeps

	// The participants table, page-aligned.
	participantsOffset = 0x1000
	maxParticipants    = 128
	participantSize    = 4096
	entryHeadSize      = cacheLine
	recordStride       = cacheLine
	recordsPerEntry    = (participantSize - entryHeadSize) / recordStride // 63
	// Records [0, pinnedRecords) belong to the processor (Go's P) that a
	// call runs on, pinned for the call; the others are taken and given
	// back by compare-and-swap (see pin.go).
	pinnedRecords = 32

	headerSize = participantsOffset + maxParticipants*participantSize // 0x81000

	// Each slot: its sequence word, length, flags, origin, then the payload.
	slotSeq        = 0  // uint64
	slotLength     = 8  // uint32
	slotFlags      = 12 // uint32: flagRedelivered
	slotOrigin     = 16 // uint64: the position the message was first enqueued at
	slotHeaderSize = 24
	slotAlign      = cacheLine

	// Limits that keep every size computation far from overflow.
	maxCapacity = 1 << 30
	maxSlotSize = 1 << 30
	maxSegment  = 1 << 40
)

// Counters: uint64 each, at offCounters + 8*index. Only rare events are
// counted in shared memory; nothing here is touched per message.
const (
	ctrConsumerSleeps        = iota // a consumer-side sleeper went to sleep on the futex
	ctrProducerSleeps               // a producer-side sleeper went to sleep on the futex
	ctrConsumerWakes                // FUTEX_WAKE calls made for sleeping consumers
	ctrProducerWakes                // FUTEX_WAKE calls made for sleeping producers
	ctrRecoveredWrites              // dead producers' claims turned into skipped slots
	ctrRecoveredReads               // dead consumers' taken slots released
	ctrSkipped                      // skipped slots passed over by consumers
	ctrParticipantsReclaimed        // participant entries of dead processes reused
	ctrRedelivered                  // recovered messages of dead consumers enqueued again
	numCounters
)

// Header flags (offFlags).
const (
	segmentRedeliver = 1 // Config.Redeliver
	segmentEventfd   = 2 // Config.Eventfd: every participant must signal the eventfds (join by Receive only)
)

// Slot flags (slotFlags).
const flagRedelivered = 1 // recovered once already: not redelivered again

// Compile-time checks of what the protocol and LAYOUT.md rely on. Each
// declaration fails to compile (a negative array length or an overflowing
// constant) when its condition is false.
var (
	// 64-bit address space: the layout's sizes and the uintptr arithmetic.
	_ [unsafe.Sizeof(uintptr(0)) - 8]byte
	// The identity block fits before the first hot word.
	_ [identityBlock - identitySize]byte
	// Hot words on lines of their own, 128 bytes apart.
	_ [0 - offEnqueuePos%hotStride]byte
	_ [0 - offCounters%hotStride]byte
	_ [countersSize - numCounters*8]byte
	_ [participantsOffset - (offCounters + countersSize)]byte
	// The table is page-aligned, each entry a whole number of lines, each
	// record on a line of its own.
	_ [0 - participantsOffset%4096]byte
	_ [0 - participantSize%cacheLine]byte
	_ [0 - entryHeadSize%cacheLine]byte
	_ [recordsPerEntry - pinnedRecords - 8]byte // at least 8 pooled records
	_ [0 - headerSize%4096]byte
	// Slots start on a line and are a whole number of lines long.
	_ [0 - slotHeaderSize%8]byte
	_ [0 - (headerSize % slotAlign)]byte
	// The waiter bitmap has a bit per participant.
	_ [128 - maxParticipants]byte
	_ [maxParticipants - 128]byte
)

func nativeMagic(m []byte) uint64   { return binary.NativeEndian.Uint64(m[offMagic:]) }
func nativeFlags(hdr []byte) uint32 { return binary.NativeEndian.Uint32(hdr[offFlags:]) }
