// Package message is the wire format of the stress tester's messages: a
// fixed header naming the producer, its sequence number and the send time,
// followed by a payload that is a pure function of the run's seed, the
// producer and the sequence number, all covered by a CRC-32C checksum. A
// consumer can therefore tell a corrupted, truncated or misdelivered message
// from a good one without any other information than the seed.
package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Layout of a message (little endian), Size bytes in all:
//
//	offset size field
//	0      4    producer id
//	4      4    checksum: CRC-32C of bytes [0,4) and [8,Size)
//	8      8    sequence number, counting from 0 for each producer
//	16     8    send time, nanoseconds of CLOCK_MONOTONIC
//	24     ...  payload, derived from (seed, producer, sequence)
const (
	offProducer = 0
	offChecksum = 4
	offSeq      = 8
	offSent     = 16

	// HeaderSize is the size of the header, and so the smallest message.
	HeaderSize = 24
)

// Errors returned by Decode, wrapped with details.
var (
	// ErrShort means the message is shorter than HeaderSize.
	ErrShort = errors.New("message shorter than its header")
	// ErrChecksum means the checksum does not match the message's bytes.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrPayload means the checksum matches but the payload is not the one
	// the producer derives for this (seed, producer, sequence).
	ErrPayload = errors.New("payload differs from the expected content")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the decoded header of a message.
type Header struct {
	Producer uint32
	Seq      uint64
	Sent     int64 // CLOCK_MONOTONIC nanoseconds
}

// Encode fills msg (at least HeaderSize bytes) with the message of producer
// and seq sent at time sent, for the given seed.
func Encode(msg []byte, seed uint64, h Header) {
	if len(msg) < HeaderSize {
		panic(fmt.Sprintf("message: buffer of %d bytes is shorter than the %d-byte header", len(msg), HeaderSize))
	}
	le := binary.LittleEndian
	le.PutUint32(msg[offProducer:], h.Producer)
	le.PutUint64(msg[offSeq:], h.Seq)
	le.PutUint64(msg[offSent:], uint64(h.Sent))
	fillPayload(msg[HeaderSize:], seed, h.Producer, h.Seq)
	le.PutUint32(msg[offChecksum:], checksum(msg))
}

// Decode checks msg and returns its header. The header is returned as read
// even when the error is not nil (except for ErrShort), so that a caller can
// say which message was damaged.
func Decode(msg []byte, seed uint64) (Header, error) {
	if len(msg) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes", ErrShort, len(msg))
	}
	le := binary.LittleEndian
	h := Header{
		Producer: le.Uint32(msg[offProducer:]),
		Seq:      le.Uint64(msg[offSeq:]),
		Sent:     int64(le.Uint64(msg[offSent:])),
	}
	if got, want := le.Uint32(msg[offChecksum:]), checksum(msg); got != want {
		return h, fmt.Errorf("%w: producer %d seq %d: stored %#08x, computed %#08x", ErrChecksum, h.Producer, h.Seq, got, want)
	}
	if i := checkPayload(msg[HeaderSize:], seed, h.Producer, h.Seq); i >= 0 {
		return h, fmt.Errorf("%w: producer %d seq %d: first wrong byte at offset %d (wrong -seed?)", ErrPayload, h.Producer, h.Seq, HeaderSize+i)
	}
	return h, nil
}

func checksum(msg []byte) uint32 {
	c := crc32.Update(0, castagnoli, msg[:offChecksum])
	return crc32.Update(c, castagnoli, msg[offSeq:])
}

// splitmix64 is the SplitMix64 output function: a cheap, well-mixed 64-bit
// hash used both to seed and to step the payload generator.
func splitmix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}

func payloadState(seed uint64, producer uint32, seq uint64) uint64 {
	return splitmix64(seed ^ splitmix64(uint64(producer)<<32^splitmix64(seq)))
}

func fillPayload(p []byte, seed uint64, producer uint32, seq uint64) {
	s := payloadState(seed, producer, seq)
	for len(p) >= 8 {
		s = splitmix64(s)
		binary.LittleEndian.PutUint64(p, s)
		p = p[8:]
	}
	if len(p) > 0 {
		s = splitmix64(s)
		for i := range p {
			p[i] = byte(s >> (8 * i))
		}
	}
}

// checkPayload returns the index of the first byte of p that differs from
// the derived payload, or -1.
func checkPayload(p []byte, seed uint64, producer uint32, seq uint64) int {
	s := payloadState(seed, producer, seq)
	off := 0
	for len(p)-off >= 8 {
		s = splitmix64(s)
		if binary.LittleEndian.Uint64(p[off:]) != s {
			for i := range 8 {
				if p[off+i] != byte(s>>(8*i)) {
					return off + i
				}
			}
		}
		off += 8
	}
	if off < len(p) {
		s = splitmix64(s)
		for i := range len(p) - off {
			if p[off+i] != byte(s>>(8*i)) {
				return off + i
			}
		}
	}
	return -1
}
