package main

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
)

func TestBatchBufs(t *testing.T) {
	bufs := batchBufs(64)
	if len(bufs) != batchSize {
		t.Fatalf("%d buffers, want %d", len(bufs), batchSize)
	}
	for i, b := range bufs {
		if len(b) != 64 || cap(b) != 64 {
			t.Errorf("buffer %d: len %d cap %d, want 64 64", i, len(b), cap(b))
		}
	}
	stampBatch(bufs, 100)
	for i, b := range bufs {
		if got := binary.LittleEndian.Uint64(b); got != uint64(100+i) {
			t.Errorf("buffer %d carries %d, want %d", i, got, 100+i)
		}
	}
}

func TestCheckMessage(t *testing.T) {
	for _, size := range zcSizes {
		sum := patternSum(size)
		m := patterned(size)
		binary.LittleEndian.PutUint64(m, 7)
		if err := checkMessage(m, 7, sum); err != nil {
			t.Errorf("%d B: %v", size, err)
		}
		if err := checkMessage(m, 8, sum); err == nil || !strings.Contains(err.Error(), "sequence number 7") {
			t.Errorf("%d B, wrong sequence number: %v", size, err)
		}
		m[size/2] ^= 1
		if err := checkMessage(m, 7, sum); err == nil || !strings.Contains(err.Error(), "CRC-32C") {
			t.Errorf("%d B, corrupted: %v", size, err)
		}
		if err := checkMessage(m[:size-1], 7, sum); err == nil {
			t.Errorf("%d B, one byte short: no error", size)
		}
	}
	if err := checkMessage(make([]byte, 4), 0, 0); err == nil {
		t.Error("a 4-byte message passed")
	}
}

func TestGbps(t *testing.T) {
	if got := gbps(250_000, 4096); math.Abs(got-1.024) > 1e-12 {
		t.Errorf("gbps(250k, 4 KiB) = %v, want 1.024", got)
	}
	if !math.IsNaN(gbps(math.NaN(), 4096)) {
		t.Error("gbps of NaN is not NaN")
	}
}

func TestInfoTarget(t *testing.T) {
	tg := infoTarget("zc", []float64{1.5, 2}, []int{4096, 65536})
	if !tg.Measured || tg.Met || tg.Info != "1.50x at 4 KiB, 2.00x at 64 KiB" {
		t.Errorf("infoTarget = %+v", tg)
	}
	if tg := infoTarget("zc", []float64{1.5, math.NaN()}, []int{4096, 65536}); tg.Measured || tg.Info != "1.50x at 4 KiB, n/a at 64 KiB" {
		t.Errorf("infoTarget with a NaN = %+v", tg)
	}
	if tg := infoTarget("zc", nil, nil); tg.Measured {
		t.Errorf("infoTarget of nothing = %+v", tg)
	}
}

func TestTputRoles(t *testing.T) {
	for _, m := range []string{mechQueueBatch, mechZeroCopy, mechCopy} {
		if p, c := tputRoles(m); p != bulkProdRole || c != bulkConsRole || !isBulk(m) || !isOwn(m) {
			t.Errorf("%s: roles %v %v", m, p, c)
		}
	}
	if p, c := tputRoles(mechQueue); p != tputProdRole || c != tputConsRole || isBulk(mechQueue) || isOwn(mechQueue) {
		t.Errorf("mpmc: roles %v %v", p, c)
	}
}

func TestBulkRatios(t *testing.T) {
	s := samples{}
	for _, sh := range inprocShapes {
		s.add("inproc/"+inprocCase{mechChan, sh[0], sh[1]}.key(), 100)
		s.add("inproc/"+inprocCase{mechQueueBatch, sh[0], sh[1]}.key(), 10)
	}
	for _, sh := range tputShapes {
		s.add("tput/"+tputKey(mechQueue, 64, sh[0], sh[1]), 5e6)
		s.add("tput/"+tputKey(mechQueueBatch, 64, sh[0], sh[1]), 2e7)
	}
	for _, size := range zcSizes {
		s.add("tput/"+tputKey(mechCopy, size, 1, 1), 1e5)
		s.add("tput/"+tputKey(mechZeroCopy, size, 1, 1), 1.5e5)
	}
	want := map[string]float64{ratioBatchInproc(1, 1): 10, ratioBatchInproc(4, 4): 10, ratioBatchProc(1, 1): 4, ratioBatchProc(4, 4): 4,
		ratioZeroCopy(4096): 1.5, ratioZeroCopy(65536): 1.5}
	rs := bulkRatios(s)
	if len(rs) != len(want) {
		t.Errorf("%d ratios, want %d", len(rs), len(want))
	}
	for _, r := range rs {
		if w, ok := want[r.Name]; !ok || math.Abs(r.Median-w) > 1e-9 || len(r.Values) != 1 {
			t.Errorf("ratio %q = %+v, want %v", r.Name, r, w)
		}
	}
}

func TestBulkTargetsAndTables(t *testing.T) {
	r := syntheticResults(map[string]float64{ratioBatchInproc(1, 1): 9, ratioBatchInproc(4, 4): 7, ratioBatchProc(1, 1): 3.5, ratioZeroCopy(4096): 1.2, ratioZeroCopy(65536): 1.8})
	r.Throughput = []TputRow{{Mechanism: mechCopy, Size: 4096, Producers: 1, Consumers: 1, MsgsPerSec: newSeries([]float64{250_000})}}
	byName := map[string]Target{}
	for _, tg := range r.Targets {
		byName[tg.Name] = tg
	}
	for _, c := range []struct {
		name          string
		met, measured bool
	}{
		{"batches of 32 in one process vs channel, 1P/1C: mpmc EnqueueBatch/DequeueBatch (64 B) msgs/s vs buffered channel (one value per send)", true, true},
		{"batches of 32 in one process vs channel, 4P/4C: mpmc EnqueueBatch/DequeueBatch (64 B) msgs/s vs buffered channel (one value per send)", false, true},
		{"batches of 32 across processes vs single-message, 64 B 1P/1C: mpmc EnqueueBatch/DequeueBatch msgs/s vs Enqueue/Dequeue", true, true},
		{"batches of 32 across processes vs single-message, 64 B 4P/4C: mpmc EnqueueBatch/DequeueBatch msgs/s vs Enqueue/Dequeue", false, false},
		{"zero-copy across processes vs copy, 1P/1C: Reserve/Commit+Take/Release msgs/s vs Enqueue/Dequeue (informational)", false, true},
	} {
		tg, ok := byName[c.name]
		if !ok || tg.Met != c.met || tg.Measured != c.measured {
			t.Errorf("target %q = %+v (found %v), want met %v measured %v", c.name, tg, ok, c.met, c.measured)
		}
	}
	md, err := r.markdown()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| batches of 32 in one process vs channel, 1P/1C: mpmc EnqueueBatch/DequeueBatch (64 B) msgs/s vs buffered channel (one value per send) | 9x | >= 8x | met |",
		"| zero-copy across processes vs copy, 1P/1C: Reserve/Commit+Take/Release msgs/s vs Enqueue/Dequeue (informational) | 1.20x at 4 KiB, 1.80x at 64 KiB | none (informational) | - |",
		"| one process (goroutines) | 1P/1C | n/a | buffered channel, one value per send | n/a | 9.00x |",
		"| across processes | 1P/1C | n/a | mpmc Enqueue/Dequeue, one message per call | n/a | 3.50x |",
		"| 4 KiB | 250.0 k/s | 1.02 | n/a | n/a | 1.20x |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
}

// TestBatchLoops runs the in-process batch loops, with a last batch shorter
// than 32, on a real queue.
func TestBatchLoops(t *testing.T) {
	for _, ic := range []inprocCase{{mechQueueBatch, 1, 1}, {mechQueueBatch, 4, 4}} {
		ns, err := runInproc(ic, 10_000)
		if err != nil || !(ns > 0) {
			t.Errorf("%s: %v ns/msg, %v", ic.key(), ns, err)
		}
	}
}

// TestBulkSteps passes messages through each bulk mode's producer and
// consumer steps on one queue (one process), then ends the stream.
func TestBulkSteps(t *testing.T) {
	for _, c := range []struct {
		mech string
		size int
	}{{mechQueueBatch, 64}, {mechCopy, 4096}, {mechZeroCopy, 4096}} {
		q, remove, err := newQueue("steps", 4*batchSize, c.size)
		if err != nil {
			t.Fatal(err)
		}
		a := tputArgs{Mech: c.mech, Size: c.size}
		put, take := bulkPut(q, a), bulkTake(q, a)
		var sent, got int64
		for range 3 {
			k, err := put(sent)
			if err != nil {
				t.Fatalf("%s: put: %v", c.mech, err)
			}
			sent += int64(k)
		}
		q.Shutdown()
		for {
			k, err := take(got)
			if err == errEOS {
				break
			}
			if err != nil {
				t.Fatalf("%s: take #%d: %v", c.mech, got, err)
			}
			got += int64(k)
		}
		if got != sent || sent == 0 {
			t.Errorf("%s: %d sent, %d received", c.mech, sent, got)
		}
		remove()
	}
}
