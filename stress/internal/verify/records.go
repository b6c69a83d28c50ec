package verify

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// RecordSize is the size of one encoded Record: a little-endian uint32
// holding the producer id (bit 31 set for a corrupt message), then a
// little-endian uint64 sequence number.
const RecordSize = 12

const corruptBit = 1 << 31

// MaxProducer is the largest producer id a Record can carry.
const MaxProducer = corruptBit - 1

// Record is what a consumer saw of one message: which producer sent it and
// its sequence number, or, when Corrupt is set, what the damaged header
// claimed.
type Record struct {
	Producer uint32
	Seq      uint64
	Corrupt  bool
	// At is when the consumer received the message, in CLOCK_MONOTONIC
	// nanoseconds. The record stream (Writer, ReadRecords) does not carry
	// it; a chaos run's logs do.
	At int64
}

// ErrTruncated is returned by ReadRecords when the stream ends inside a
// record, as it does when a consumer is killed while writing.
var ErrTruncated = errors.New("record stream ends inside a record")

// Writer appends encoded records to a stream through a buffer. It is not
// safe for concurrent use.
type Writer struct {
	w   *bufio.Writer
	buf [RecordSize]byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write buffers one record.
func (w *Writer) Write(r Record) error {
	p := r.Producer & MaxProducer
	if r.Corrupt {
		p |= corruptBit
	}
	binary.LittleEndian.PutUint32(w.buf[0:], p)
	binary.LittleEndian.PutUint64(w.buf[4:], r.Seq)
	_, err := w.w.Write(w.buf[:])
	return err
}

// Flush writes out the buffered records.
func (w *Writer) Flush() error { return w.w.Flush() }

// batchRecords is how many records ReadRecords decodes per call of fn.
const batchRecords = 4096

// ReadRecords decodes the records of r in order and passes them to fn in
// batches (the slice is reused after fn returns). It returns the number of
// records read, and ErrTruncated (wrapped) if r ends inside a record; the
// complete records before that were passed to fn.
func ReadRecords(r io.Reader, fn func([]Record)) (uint64, error) {
	buf := make([]byte, batchRecords*RecordSize)
	batch := make([]Record, 0, batchRecords)
	var n uint64
	have := 0 // bytes in buf
	for {
		k, err := r.Read(buf[have:])
		have += k
		whole := have / RecordSize
		batch = batch[:0]
		for i := range whole {
			b := buf[i*RecordSize:]
			p := binary.LittleEndian.Uint32(b[0:])
			batch = append(batch, Record{Producer: p & MaxProducer, Seq: binary.LittleEndian.Uint64(b[4:]), Corrupt: p&corruptBit != 0})
		}
		if whole > 0 {
			fn(batch)
			n += uint64(whole)
			have = copy(buf, buf[whole*RecordSize:have])
		}
		switch {
		case err == io.EOF && have > 0:
			return n, fmt.Errorf("%w: %d stray bytes after %d records", ErrTruncated, have, n)
		case err == io.EOF:
			return n, nil
		case err != nil:
			return n, err
		}
	}
}
