package verify

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// run feeds each consumer's records to a fresh verifier.
func run(producers []Producer, allow Allowance, consumers ...[]Record) Result {
	v := New(len(producers))
	for id, recs := range consumers {
		c := v.Consumer(id)
		for _, r := range recs {
			c.Observe(r)
		}
	}
	return v.Finish(producers, allow)
}

func exact(sent ...uint64) []Producer {
	ps := make([]Producer, len(sent))
	for i, n := range sent {
		ps[i] = Producer{Sent: n, Exact: true}
	}
	return ps
}

// clean splits the messages of the producers round-robin over n consumers,
// in order.
func clean(sent []uint64, n int) [][]Record {
	out := make([][]Record, n)
	k := 0
	for s := uint64(0); ; s++ {
		any := false
		for p, m := range sent {
			if s < m {
				any = true
				out[k%n] = append(out[k%n], Record{Producer: uint32(p), Seq: s})
				k++
			}
		}
		if !any {
			return out
		}
	}
}

func TestCleanPasses(t *testing.T) {
	sent := []uint64{1000, 999, 1, 0}
	res := run(exact(sent...), Allowance{}, clean(sent, 3)...)
	if !res.OK() || res.Problems() != "" {
		t.Fatalf("clean run failed: %s", res.Problems())
	}
	if res.Sent != 2000 || res.Received != 2000 || res.Unique != 2000 {
		t.Fatalf("counts: %+v", res)
	}
}

func TestLoss(t *testing.T) {
	sent := []uint64{100, 100}
	cs := clean(sent, 2)
	cs[1] = append(cs[1][:10], cs[1][11:]...) // drop one
	cs[0] = cs[0][:len(cs[0])-1]              // and the last of another
	res := run(exact(sent...), Allowance{}, cs...)
	if res.OK() || res.Lost.Count != 2 {
		t.Fatalf("loss not detected: %+v", res)
	}
	if !strings.Contains(res.Problems(), "2 lost") {
		t.Fatalf("problems = %q", res.Problems())
	}
	if res := run(exact(sent...), Allowance{Lost: 2}, cs...); !res.OK() {
		t.Fatalf("loss within allowance failed: %s", res.Problems())
	}
}

func TestLossOfEverything(t *testing.T) {
	res := run(exact(130), Allowance{})
	if res.OK() || res.Lost.Count != 130 || res.Lost.Examples[0].Seq != 0 {
		t.Fatalf("total loss: %+v", res)
	}
}

func TestDuplicateAcrossConsumers(t *testing.T) {
	sent := []uint64{50}
	cs := clean(sent, 2)
	cs[1] = append(cs[1], cs[0][3])
	res := run(exact(sent...), Allowance{}, cs...)
	if res.OK() || res.Duplicated.Count != 1 || res.Duplicated.Examples[0].Seq != cs[0][3].Seq {
		t.Fatalf("duplicate not detected: %+v", res)
	}
	if res.Reordered.Count != 1 { // it also comes after a higher seq in consumer 1
		t.Fatalf("reordered = %d", res.Reordered.Count)
	}
	if res := run(exact(sent...), Allowance{Duplicated: 1}, cs...); res.Duplicated.Count != 1 || res.OK() {
		t.Fatalf("allowance must not excuse the reordering: %+v", res)
	}
}

func TestDuplicateInARow(t *testing.T) {
	recs := []Record{{0, 0, false, 0}, {0, 1, false, 0}, {0, 1, false, 0}, {0, 2, false, 0}}
	res := run(exact(3), Allowance{}, recs)
	if res.OK() || res.Duplicated.Count != 1 || res.Reordered.Count != 1 {
		t.Fatalf("repeat not detected: %+v", res)
	}
}

func TestReordering(t *testing.T) {
	recs := []Record{{0, 0, false, 0}, {1, 0, false, 0}, {0, 2, false, 0}, {0, 1, false, 0}, {1, 1, false, 0}}
	res := run(exact(3, 2), Allowance{}, recs)
	if res.OK() || res.Reordered.Count != 1 || res.Lost.Count != 0 || res.Duplicated.Count != 0 {
		t.Fatalf("reordering not detected: %+v", res)
	}
	e := res.Reordered.Examples[0]
	if e.Seq != 1 || e.Prev != 2 || e.Index != 3 || e.Consumer != 0 {
		t.Fatalf("example = %+v", e)
	}
	// Interleaving between consumers is not a reordering.
	res = run(exact(4), Allowance{}, []Record{{0, 0, false, 0}, {0, 3, false, 0}}, []Record{{0, 1, false, 0}, {0, 2, false, 0}})
	if !res.OK() {
		t.Fatalf("interleaving across consumers failed: %s", res.Problems())
	}
}

func TestBadChecksum(t *testing.T) {
	sent := []uint64{10}
	cs := clean(sent, 1)
	cs[0][4].Corrupt = true
	res := run(exact(sent...), Allowance{Lost: 100, Duplicated: 100}, cs...)
	if res.OK() || res.Corrupt.Count != 1 || res.Lost.Count != 1 {
		t.Fatalf("corruption not detected: %+v", res)
	}
	if !strings.Contains(res.Problems(), "1 corrupt") {
		t.Fatalf("problems = %q", res.Problems())
	}
}

func TestUnknown(t *testing.T) {
	res := run(exact(5), Allowance{}, []Record{{0, 0, false, 0}, {0, 1, false, 0}, {0, 2, false, 0}, {0, 3, false, 0}, {0, 4, false, 0}, {0, 5, false, 0}, {9, 0, false, 0}})
	if res.OK() || res.Unknown.Count != 2 {
		t.Fatalf("unknown messages not detected: %+v", res)
	}
}

func TestInexactProducer(t *testing.T) {
	ps := []Producer{{Exact: false}}
	res := run(ps, Allowance{}, []Record{{0, 0, false, 0}, {0, 1, false, 0}, {0, 3, false, 0}})
	if res.OK() || res.Lost.Count != 1 || res.Lost.Examples[0].Seq != 2 || res.Unknown.Count != 0 {
		t.Fatalf("inexact producer: %+v", res)
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	in := []Record{{0, 0, false, 0}, {MaxProducer, 1<<64 - 1, true, 0}, {5, 77, false, 0}}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != len(in)*RecordSize {
		t.Fatalf("encoded %d bytes", buf.Len())
	}
	var out []Record
	// One byte per Read, to cross record boundaries.
	n, err := ReadRecords(iotest.OneByteReader(bytes.NewReader(buf.Bytes())), func(rs []Record) { out = append(out, rs...) })
	if err != nil || n != 3 || len(out) != 3 {
		t.Fatalf("read %d, %v", n, err)
	}
	for i := range in {
		if in[i] != out[i] {
			t.Fatalf("record %d: %+v != %+v", i, out[i], in[i])
		}
	}
	n, err = ReadRecords(bytes.NewReader(buf.Bytes()[:buf.Len()-3]), func([]Record) {})
	if n != 2 || !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated stream: %d, %v", n, err)
	}
}

func TestLimitNamesTheConsumer(t *testing.T) {
	v := New(1)
	v.SetLimit(0, 2)
	c := v.Consumer(4)
	for _, s := range []uint64{0, 1, 2} {
		c.Observe(Record{Seq: s})
	}
	res := v.Finish([]Producer{{Sent: 2, Exact: true}}, Allowance{})
	if res.OK() || res.Unknown.Count != 1 || res.Unknown.Examples[0].Consumer != 4 || res.Unique != 2 {
		t.Fatalf("limit: %+v", res)
	}
}

func TestWildSequenceNumber(t *testing.T) {
	// A sequence number far out must cost neither memory nor a scan up to it.
	v := New(1)
	c := v.Consumer(0)
	c.ObserveBatch([]Record{{Seq: 0}, {Seq: 1 << 60}, {Seq: 1}})
	res := v.Finish([]Producer{{Sent: 2, Exact: true}}, Allowance{})
	if res.OK() || res.Unknown.Count != 1 || res.Unknown.Examples[0].Seq != 1<<60 || res.Lost.Count != 0 || res.Unique != 2 {
		t.Fatalf("wild seq: %+v", res)
	}
}

func TestConcurrentConsumers(t *testing.T) {
	sent := []uint64{20000, 20000, 20000}
	cs := clean(sent, 4)
	v := New(len(sent))
	var wg sync.WaitGroup
	for id, recs := range cs {
		c := v.Consumer(id)
		wg.Go(func() {
			for i := 0; i < len(recs); i += 100 {
				c.ObserveBatch(recs[i:min(i+100, len(recs))])
			}
		})
	}
	wg.Wait()
	if res := v.Finish(exact(sent...), Allowance{}); !res.OK() || res.Unique != 60000 {
		t.Fatalf("concurrent clean run: %s %+v", res.Problems(), res)
	}
}

func BenchmarkObserve(b *testing.B) {
	v := New(1)
	c := v.Consumer(0)
	batch := make([]Record, 512)
	seq := uint64(0)
	for b.Loop() {
		for i := range batch {
			batch[i] = Record{Seq: seq}
			seq++
		}
		c.ObserveBatch(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(seq), "ns/record")
}

func TestGrowAndMaySend(t *testing.T) {
	// A chaos run: producer 1 joins after consumer 0 began; producer 0 was
	// killed with one message in flight, which was delivered; producer 1
	// was killed with nothing in flight delivered.
	v := New(1)
	c := v.Consumer(0)
	c.ObserveBatch([]Record{{Producer: 0, Seq: 0}, {Producer: 0, Seq: 1}})
	v.Grow(2)
	v.Grow(1) // never lowers
	if v.Producers() != 2 {
		t.Fatalf("producers = %d", v.Producers())
	}
	c.ObserveBatch([]Record{{Producer: 1, Seq: 0}, {Producer: 0, Seq: 2}, {Producer: 1, Seq: 1}})
	ps := []Producer{{Sent: 2, Exact: true, MaySend: 1}, {Sent: 2, Exact: true, MaySend: 1}}
	res := v.Finish(ps, Allowance{})
	if !res.OK() || res.Unacked != 1 || res.Unique != 5 || res.Sent != 4 {
		t.Fatalf("in-flight message of a killed producer: %s %+v", res.Problems(), res)
	}
	// Beyond the one in flight is never sent.
	c.Observe(Record{Producer: 0, Seq: 4})
	res = v.Finish(ps, Allowance{})
	if res.OK() || res.Unknown.Count != 1 || res.Unknown.Examples[0].Seq != 4 || res.Unacked != 1 {
		t.Fatalf("beyond the message in flight: %+v", res)
	}
	// A producer id not grown to is unknown.
	c.Observe(Record{Producer: 2, Seq: 0})
	if res := v.Finish(ps, Allowance{}); res.Unknown.Count != 2 {
		t.Fatalf("unknown producer: %+v", res)
	}
}
