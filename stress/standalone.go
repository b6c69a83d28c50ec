package main

// The commands a person runs by hand against a queue that outlives them:
// create, produce, consume and shutdown. A typical session, in two
// terminals:
//
//	stress create -path /dev/shm/demo
//	stress consume -path /dev/shm/demo              # terminal 1
//	stress produce -path /dev/shm/demo -shutdown    # terminal 2
//	rm /dev/shm/demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
	"github.com/shmq/mpmc/stress/internal/verify"
)

// openOrCreate opens the queue at path, or creates it with the given
// geometry if nothing is there. created says which.
func openOrCreate(path string, capacity, size int) (q *mpmc.Queue, created bool, err error) {
	for range 3 {
		q, err = mpmc.Open(path)
		if !errors.Is(err, fs.ErrNotExist) {
			return q, false, err
		}
		if err := checkGeometry(size, capacity); err != nil {
			return nil, false, err
		}
		q, err = mpmc.Create(path, mpmc.Config{Capacity: capacity, SlotSize: size})
		if !errors.Is(err, fs.ErrExist) {
			return q, err == nil, err
		}
		// Someone else created it meanwhile: open theirs.
	}
	return nil, false, err
}

// queueError ends a command whose queue could not be opened or created
// with an ERROR verdict.
func queueError(out *output, cmd, path string, err error) int {
	switch {
	case errors.Is(err, mpmc.ErrBadSegment):
		return out.error(harness.CauseQueue, "%s: %s is not a usable queue segment: %v", cmd, path, err)
	case errors.Is(err, syscall.ENOSPC):
		return out.error(harness.CauseQueue, "%s: no room for the segment %s: %v", cmd, path, err)
	}
	return out.error(harness.CauseQueue, "%s: %v", cmd, err)
}

// byHand is a by-hand command's flag set, its -path and its output.
type byHand struct {
	fs   *flag.FlagSet
	path *string
	out  output
}

// newByHand makes the flag set of command name with -json, and -path
// (described by pathUsage) unless pathUsage is empty.
func newByHand(name, pathUsage string, stdout io.Writer) *byHand {
	b := &byHand{fs: flag.NewFlagSet(name, flag.ContinueOnError), out: output{w: stdout}}
	if pathUsage != "" {
		b.path = b.fs.String("path", "", pathUsage)
	}
	b.fs.BoolVar(&b.out.json, "json", false, "print the report, verdict included, as one JSON document")
	return b
}

// parse parses args and checks that -path (if the command has one) is
// given. It returns -1 when the command may go on, otherwise the exit
// status to return (after printing the verdict).
func (b *byHand) parse(args []string, stderr io.Writer) int {
	if code := parseFlags(b.fs, args, b.out.w, stderr); code >= 0 {
		return code
	}
	if b.path != nil && *b.path == "" {
		return b.out.error(harness.CauseUsage, "%s: -path is required", b.fs.Name())
	}
	return -1
}

// loopReport is what `stress produce` and `stress consume` both report.
type loopReport struct {
	harness.Verdict
	Path     string  `json:"path"`
	Created  bool    `json:"created"`
	Messages uint64  `json:"messages"`
	Seconds  float64 `json:"seconds"`
	Stop     string  `json:"stop"`
}

// loopFlags are the flags that produce and consume share.
type loopFlags struct {
	duration, spin *time.Duration
	capacity       *int
	seed           *uint64
}

// loopFlags defines the shared flags; seedUsage says what -seed must match.
func (b *byHand) loopFlags(seedUsage string) loopFlags {
	return loopFlags{
		duration: b.fs.Duration("duration", 0, "stop after this long (0: no limit)"),
		capacity: b.fs.Int("capacity", defaultCapacity, "capacity if the queue is created"),
		seed:     b.fs.Uint64("seed", defaultSeed, seedUsage),
		spin:     b.fs.Duration("spin", mpmc.DefaultSpin, "spin budget before sleeping on the futex"),
	}
}

// openLoop opens the queue at rep.Path for a producer or consumer loop,
// creating it with capacity and slot size if it is missing, and returns it
// with a context that Ctrl-C (or SIGTERM) cancels. It returns a nil queue
// and the exit status when the queue cannot be had. The caller closes the
// queue and calls stop.
func (b *byHand) openLoop(rep *loopReport, capacity, size int, spin time.Duration) (q *mpmc.Queue, ctx context.Context, stop func(), code int) {
	q, created, err := openOrCreate(rep.Path, capacity, size)
	if err != nil {
		return nil, nil, nil, queueError(&b.out, b.fs.Name(), rep.Path, err)
	}
	rep.Created = created
	if created {
		b.out.say("created %s: capacity %d, slot size %d (remove it with rm when done)", rep.Path, q.Cap(), q.SlotSize())
	}
	q.SetSpin(spin)
	ctx, stop = signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	return q, ctx, stop, -1
}

// produceReport is what `stress produce` did.
type produceReport struct {
	loopReport
	Producer uint `json:"producer"`
	Shutdown bool `json:"shutdown"`
}

func produceCmd(args []string, stdout, stderr io.Writer) int {
	b := newByHand("produce", "queue segment (created with -capacity and -size if missing)", stdout)
	fs, path, out := b.fs, b.path, &b.out
	id := fs.Uint("id", 0, "producer id written into each message: give each producer its own")
	messages := fs.Uint64("messages", 1_000_000, "messages to send (0: until -duration, shutdown or Ctrl-C)")
	size := fs.Int("size", defaultSize, "message size in bytes, header included (at most the queue's slot size)")
	lf := b.loopFlags("payload seed (consumers must use the same)")
	shutdown := fs.Bool("shutdown", false, "shut the queue down when done, so that consumers drain it and stop")
	if code := b.parse(args, stderr); code >= 0 {
		return code
	}
	if *id > verify.MaxProducer || *lf.duration < 0 {
		return out.error(harness.CauseUsage, "produce: -id must be at most %d and -duration not negative", verify.MaxProducer)
	}
	rep := &produceReport{loopReport: loopReport{Path: *path}, Producer: *id, Shutdown: *shutdown}
	q, ctx, stop, code := b.openLoop(&rep.loopReport, *lf.capacity, *size, *lf.spin)
	if q == nil {
		return code
	}
	defer q.Close()
	defer stop()
	if err := checkGeometry(*size, 2); err != nil || *size > q.SlotSize() {
		return out.error(harness.CauseUsage, "produce: -size %d must be in [%d, slot size %d]", *size, 24, q.SlotSize())
	}
	cfg := producerConfig{loopConfig: loopConfig{Clock: newMonoClock(), Size: *size, Seed: *lf.seed}, ID: uint32(*id), Count: *messages}
	if *lf.duration > 0 {
		cfg.Deadline = time.Now().Add(*lf.duration)
	}
	start := time.Now()
	st, err := producerLoop(ctx, q, cfg)
	el := time.Since(start)
	rep.Messages, rep.Seconds, rep.Stop = st.Messages, el.Seconds(), st.Stop
	out.say("produced %d messages as producer %d (seq 0..%d) in %.2f s, %s msg/s; stopped by %s",
		st.Messages, *id, int64(st.Messages)-1, el.Seconds(), thousands(uint64(float64(st.Messages)/el.Seconds())), st.Stop)
	if *shutdown {
		q.Shutdown()
		out.say("shut the queue down")
	}
	if err != nil {
		rep.Fail(harness.CauseQueue, "produce: %v", err)
	} else {
		rep.OK("produced %d messages as producer %d", st.Messages, *id)
	}
	return out.end(rep)
}

// producerTrack is what one consumer saw of one producer.
type producerTrack struct {
	Producer  uint32 `json:"producer"`
	Count     uint64 `json:"messages"`
	First     uint64 `json:"first_seq"`
	Last      uint64 `json:"last_seq"`
	Gaps      uint64 `json:"skipped_over"`
	Backwards uint64 `json:"not_in_order"`
}

// observe counts a record of the producer.
func (t *producerTrack) observe(seq uint64) {
	switch {
	case seq <= t.Last:
		t.Backwards++
	case seq > t.Last+1:
		t.Gaps += seq - t.Last - 1
	}
	t.Count++
	t.Last = max(t.Last, seq)
}

// consumeReport is what `stress consume` saw.
type consumeReport struct {
	loopReport
	Producers      []*producerTrack `json:"producers"`
	Latency        *Latency         `json:"latency_ns,omitempty"`
	Corrupt        uint64           `json:"corrupt"`
	CorruptSamples []string         `json:"corrupt_samples,omitempty"`
}

func consumeCmd(args []string, stdout, stderr io.Writer) int {
	b := newByHand("consume", "queue segment (created with -capacity and -size if missing)", stdout)
	fs, path, out := b.fs, b.path, &b.out
	messages := fs.Uint64("messages", 0, "stop after this many messages (0: until the queue is shut down)")
	size := fs.Int("size", defaultSize, "slot size if the queue is created")
	lf := b.loopFlags("payload seed the producers used")
	if code := b.parse(args, stderr); code >= 0 {
		return code
	}
	if *lf.duration < 0 {
		return out.error(harness.CauseUsage, "consume: -duration must not be negative")
	}
	rep := &consumeReport{loopReport: loopReport{Path: *path}, Producers: []*producerTrack{}}
	q, ctx, stop, code := b.openLoop(&rep.loopReport, *lf.capacity, *size, *lf.spin)
	if q == nil {
		return code
	}
	defer q.Close()
	defer stop()
	if *lf.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *lf.duration)
		defer cancel()
	}
	out.say("consuming from %s until it is shut down (Ctrl-C stops)", *path)
	tracks := map[uint32]*producerTrack{}
	sink := func(r verify.Record) error {
		switch t := tracks[r.Producer]; {
		case r.Corrupt:
		case t == nil:
			tracks[r.Producer] = &producerTrack{Producer: r.Producer, Count: 1, First: r.Seq, Last: r.Seq}
		default:
			t.observe(r.Seq)
		}
		return nil
	}
	hist := newLatencyHistogram()
	start := time.Now()
	st, err := consumerLoop(ctx, q, consumerConfig{loopConfig: loopConfig{Clock: newMonoClock(), Seed: *lf.seed}, Limit: *messages, Hist: hist, Sink: sink})
	el := time.Since(start)
	rep.Messages, rep.Seconds, rep.Stop, rep.Corrupt, rep.CorruptSamples = st.Messages, el.Seconds(), st.Stop, st.Corrupt, st.CorruptSamples
	out.say("consumed %d messages in %.2f s; stopped by %s", st.Messages, el.Seconds(), st.Stop)
	var backwards uint64
	for _, t := range tracks {
		rep.Producers = append(rep.Producers, t)
		backwards += t.Backwards
	}
	sort.Slice(rep.Producers, func(i, j int) bool { return rep.Producers[i].Producer < rep.Producers[j].Producer })
	for _, t := range rep.Producers {
		out.say("producer %d: %d messages, seq %d..%d, %d skipped over, %d not in increasing order", t.Producer, t.Count, t.First, t.Last, t.Gaps, t.Backwards)
	}
	if rep.Latency = newLatency(hist); rep.Latency != nil {
		l := rep.Latency
		out.say("latency: p50 %v  p90 %v  p99 %v  p99.9 %v  max %v", ns(l.P50), ns(l.P90), ns(l.P99), ns(l.P999), ns(l.Max))
	}
	if len(tracks) > 0 {
		out.say("(sequence numbers skipped over went to other consumers, or were sent before this one started)")
	}
	for _, s := range st.CorruptSamples {
		out.say("corrupt: %s", s)
	}
	switch {
	case err != nil:
		rep.Fail(harness.CauseQueue, "consume: %v", err)
	case st.Corrupt > 0 || backwards > 0:
		rep.Fail(harness.CauseDelivery, "consume: %d corrupt messages, %d not in increasing order", st.Corrupt, backwards)
	default:
		rep.OK("consumed %d messages from %d producers, every checksum intact, each producer's sequence strictly increasing", st.Messages, len(tracks))
	}
	return out.end(rep)
}

// createReport is the segment `stress create` made.
type createReport struct {
	harness.Verdict
	Path     string `json:"path"`
	Capacity int    `json:"capacity"`
	SlotSize int    `json:"slot_size"`
	Mode     string `json:"mode"`
}

func createCmd(args []string, stdout, stderr io.Writer) int {
	b := newByHand("create", "segment to create (must not exist), e.g. /dev/shm/demo", stdout)
	fs, path, out := b.fs, b.path, &b.out
	size := fs.Int("size", defaultSize, "slot size: the largest message in bytes")
	capacity := fs.Int("capacity", defaultCapacity, "capacity in messages (power of two)")
	perm := fs.String("perm", "0600", "file mode of the segment, octal")
	if code := b.parse(args, stderr); code >= 0 {
		return code
	}
	mode, err := strconv.ParseUint(*perm, 8, 32)
	if err != nil || mode > 0o777 {
		return out.error(harness.CauseUsage, "create: -perm %q is not an octal file mode", *perm)
	}
	if err := checkGeometry(*size, *capacity); err != nil {
		return out.error(harness.CauseUsage, "create: %v", err)
	}
	q, err := mpmc.Create(*path, mpmc.Config{Capacity: *capacity, SlotSize: *size, Perm: os.FileMode(mode)})
	if err != nil {
		return queueError(out, "create", *path, err)
	}
	q.Close()
	rep := &createReport{Path: *path, Capacity: *capacity, SlotSize: *size, Mode: fmt.Sprintf("%#o", mode)}
	rep.OK("created %s: capacity %d, slot size %d, mode %#o (remove it with rm when done)", *path, *capacity, *size, mode)
	return out.end(rep)
}

// shutdownReport is the queue `stress shutdown` shut down.
type shutdownReport struct {
	harness.Verdict
	Path string `json:"path"`
	// Len is how many messages the consumers still drain.
	Len int `json:"len"`
}

func shutdownCmd(args []string, stdout, stderr io.Writer) int {
	b := newByHand("shutdown", "queue segment to shut down", stdout)
	path, out := b.path, &b.out
	if code := b.parse(args, stderr); code >= 0 {
		return code
	}
	q, err := mpmc.Open(*path)
	if err != nil {
		return queueError(out, "shutdown", *path, err)
	}
	defer q.Close()
	rep := &shutdownReport{Path: *path}
	if err := q.Shutdown(); err != nil {
		rep.Fail(harness.CauseQueue, "shutdown: %v", err)
		return out.end(rep)
	}
	rep.Len = q.Len()
	rep.OK("%s shut down: enqueues now fail, consumers drain %d messages and stop", *path, rep.Len)
	return out.end(rep)
}
