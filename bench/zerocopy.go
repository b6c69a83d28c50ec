package main

// Zero-copy against copying, across processes, 1P/1C, messages that fill
// their slot (4 KiB and 64 KiB). Both modes do the same work on the
// message; only the library's copies differ:
//
//   - the producer stamps a sequence number into its source buffer (the
//     rest of which holds a fixed pattern) and puts the whole message into
//     a slot: copying, Enqueue copies it; zero-copy, it copies it into the
//     Reservation's Bytes itself, then Commits;
//   - the consumer reads the whole message where it has it: copying,
//     Dequeue copies the slot into its destination buffer, and it reads
//     that; zero-copy, it reads the Taken's Bytes in place, then Releases.
//     Reading is checking: the sequence number in order and a CRC-32C of the
//     rest equal to the pattern's.
//
// So copying passes the message through one copy more (the consumer's).

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/shmq/mpmc"
)

// Zero-copy and copying mechanism names.
const (
	mechZeroCopy = "mpmc zero-copy"
	mechCopy     = "mpmc copy"
)

// zcSizes are the slot (and message) sizes of the zero-copy runs.
var zcSizes = []int{4 << 10, 64 << 10}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// patterned returns a message of size bytes (at least 8): a sequence number
// (0) in the first 8, a fixed pattern after.
func patterned(size int) []byte {
	b := make([]byte, size)
	for i := 8; i < size; i++ {
		b[i] = byte(i*131 + i>>8)
	}
	return b
}

// patternSum is the CRC-32C of what follows the sequence number in a
// patterned message of size bytes.
func patternSum(size int) uint32 { return crc32.Checksum(patterned(size)[8:], castagnoli) }

// checkMessage reads all of msg: it must carry sequence number seq and the
// pattern, whose CRC-32C is sum.
func checkMessage(msg []byte, seq int64, sum uint32) error {
	if len(msg) < 8 {
		return fmt.Errorf("message #%d is %d bytes", seq, len(msg))
	}
	if got := binary.LittleEndian.Uint64(msg); got != uint64(seq) {
		return fmt.Errorf("message #%d carries sequence number %d", seq, got)
	}
	if got := crc32.Checksum(msg[8:], castagnoli); got != sum {
		return fmt.Errorf("message #%d: CRC-32C %#x, want %#x", seq, got, sum)
	}
	return nil
}

// gbps converts messages per second of size bytes into gigabytes (1e9
// bytes) per second.
func gbps(msgsPerSec float64, size int) float64 { return msgsPerSec * float64(size) / 1e9 }

// slotPut is the producer's step of mechZeroCopy or mechCopy: one whole
// message per call.
func slotPut(q *mpmc.Queue, a tputArgs) step {
	ctx := context.Background()
	src := patterned(a.Size)
	if a.Mech == mechCopy {
		return func(n int64) (int, error) {
			binary.LittleEndian.PutUint64(src, uint64(n))
			return 1, q.Enqueue(ctx, src)
		}
	}
	return func(n int64) (int, error) {
		binary.LittleEndian.PutUint64(src, uint64(n))
		r, err := q.Reserve(ctx)
		if err != nil {
			return 0, err
		}
		copy(r.Bytes(), src)
		return 1, r.Commit(len(src))
	}
}

// slotTake is the consumer's step of mechZeroCopy or mechCopy: one whole
// message per call, checked.
func slotTake(q *mpmc.Queue, a tputArgs) step {
	ctx := context.Background()
	sum := patternSum(a.Size)
	if a.Mech == mechCopy {
		dst := make([]byte, a.Size)
		return func(n int64) (int, error) {
			m, err := q.Dequeue(ctx, dst)
			if err != nil {
				return 0, endOfStream(err)
			}
			return 1, checkMessage(dst[:m], n, sum)
		}
	}
	return func(n int64) (int, error) {
		t, err := q.Take(ctx)
		if err != nil {
			return 0, endOfStream(err)
		}
		err = checkMessage(t.Bytes(), n, sum)
		if rerr := t.Release(); err == nil {
			err = rerr
		}
		return 1, err
	}
}
