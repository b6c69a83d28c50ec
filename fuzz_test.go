package mpmc

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// The segment is untrusted input: whatever bytes a file or a peer puts
// there, Open and the operations must return errors, never panic or touch
// memory out of bounds. The seed corpus is in testdata/fuzz.

// validImage returns the bytes of a fresh segment of the given geometry.
func validImage(t testing.TB, capacity, slotSize int) []byte {
	t.Helper()
	q, p := newTestQueue(t, capacity, slotSize)
	q.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzOpen(f *testing.F) {
	img := validImage(f, 4, 8)
	f.Add(img[:0x80], int16(0))
	f.Add(img[:0x60], int16(-64))
	f.Add([]byte("SHMQMPMC"), int16(0))
	f.Add([]byte{}, int16(-int16(len(img)/2)))
	f.Add(binary.NativeEndian.AppendUint64(nil, segmentMagic), int16(4096))
	openInitWait = 0
	f.Fuzz(func(t *testing.T, header []byte, resize int16) {
		b := append([]byte(nil), img...)
		copy(b, header) // overlay: the identity block, positions, wait sides...
		size := max(0, len(b)+int(resize))
		if size <= len(b) {
			b = b[:size]
		} else {
			b = append(b, make([]byte, size-len(b))...)
		}
		p := segPath(t)
		defer os.Remove(p)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := Open(p)
		if errors.Is(err, ErrNoEventfd) {
			// A well-formed queue that signals eventfds: it is joined
			// with Receive, and Inspect shows it.
			if _, ierr := Inspect(p); ierr != nil {
				t.Fatalf("Inspect refused an eventfd queue that Open validated: %v", ierr)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrBadSegment) {
				t.Fatalf("Open refused with %v, not ErrBadSegment", err)
			}
			if _, ierr := Inspect(p); ierr == nil {
				t.Fatal("Inspect accepted what Open refused")
			}
			return
		}
		defer q.Close()
		exercise(t, q)
		if _, err := Inspect(p); err != nil {
			t.Fatalf("Inspect refused what Open accepted: %v", err)
		}
	})
}

func FuzzSlots(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint64(0))
	img := make([]byte, 4*64)
	for i := range uint64(4) {
		binary.NativeEndian.PutUint64(img[i*64:], seqWord(i+1, 0))
		binary.NativeEndian.PutUint32(img[i*64+8:], uint32(i*5))
	}
	f.Add(img, uint64(0), uint64(0))
	binary.NativeEndian.PutUint32(img[8:], 1<<31)
	f.Add(img, uint64(0), uint64(2))
	binary.NativeEndian.PutUint64(img[64:], seqWord(2, slotSkipped))
	binary.NativeEndian.PutUint64(img[128:], seqWord(3, slotTakeover))
	f.Add(img, uint64(1<<62-1), uint64(1))
	f.Fuzz(func(t *testing.T, slots []byte, enq, deq uint64) {
		q, p := newTestQueue(t, 4, 16)
		defer os.Remove(p)
		copy(q.seg.mem[headerSize:], slots)
		q.ring.pos[producers].Store(enq)
		q.ring.pos[consumers].Store(deq)
		exercise(t, q)
	})
}

// exercise runs every non-blocking operation a few times on q and checks
// that results stay within bounds.
func exercise(t *testing.T, q *Queue) {
	// A hang is a failure too: shared memory must not make a call spin.
	hung := time.AfterFunc(10*time.Second, func() { panic("exercise hung on this input") })
	defer hung.Stop()
	buf := make([]byte, q.SlotSize()+8)
	for i := range 3 * q.Cap() {
		n, err := q.TryDequeue(buf[:i%len(buf)])
		if n < 0 || n > q.SlotSize() || (err == nil && n > i%len(buf)) {
			t.Fatalf("TryDequeue returned %d bytes (err %v)", n, err)
		}
		if err != nil && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrBadSegment) &&
			!errors.Is(err, ErrClosed) && err != io.ErrShortBuffer {
			t.Fatalf("TryDequeue: unexpected error %v", err)
		}
		err = q.TryEnqueue(buf[:i%(q.SlotSize()+1)])
		if err != nil && !errors.Is(err, ErrFull) && !errors.Is(err, ErrBadSegment) && !errors.Is(err, ErrClosed) {
			t.Fatalf("TryEnqueue: unexpected error %v", err)
		}
		if l := q.Len(); l < 0 || l > q.Cap() {
			t.Fatalf("Len %d outside [0, %d]", l, q.Cap())
		}
	}
	bufs, sizes := [][]byte{buf[:1], buf, buf}, make([]int, 3)
	if n, err := q.TryDequeueBatch(bufs, sizes); n < 0 || n > 3 || (err != nil && !errors.Is(err, ErrEmpty) &&
		!errors.Is(err, ErrBadSegment) && !errors.Is(err, ErrClosed) && err != io.ErrShortBuffer) {
		t.Fatalf("TryDequeueBatch: %d, %v", n, err)
	}
	if n, err := q.TryEnqueueBatch([][]byte{buf[:1], buf[:2]}); n < 0 || n > 2 || (err != nil &&
		!errors.Is(err, ErrFull) && !errors.Is(err, ErrBadSegment) && !errors.Is(err, ErrClosed)) {
		t.Fatalf("TryEnqueueBatch: %d, %v", n, err)
	}
	if tk, err := q.TryTake(); err == nil {
		if len(tk.Bytes()) > q.SlotSize() {
			t.Fatalf("TryTake: %d bytes", len(tk.Bytes()))
		}
		tk.Release()
	}
	if r, err := q.TryReserve(); err == nil {
		r.Commit(min(3, q.SlotSize()))
	}
	q.ring.heldUpBy(producers)
	q.ring.heldUpBy(consumers)
	q.ring.recoverAll(nil)
	q.Stats()
}
