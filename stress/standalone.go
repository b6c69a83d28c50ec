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

// queueError turns an error opening or creating a queue into an ERROR line.
func queueError(stdout io.Writer, cmd, path string, err error) int {
	switch {
	case errors.Is(err, mpmc.ErrBadSegment):
		fmt.Fprintf(stdout, "ERROR: %s: %s is not a usable queue segment: %v\n", cmd, path, err)
	case errors.Is(err, syscall.ENOSPC):
		fmt.Fprintf(stdout, "ERROR: %s: no room for the segment %s: %v\n", cmd, path, err)
	default:
		fmt.Fprintf(stdout, "ERROR: %s: %v\n", cmd, err)
	}
	return exitError
}

func requirePath(stdout io.Writer, cmd, path string) int {
	if path == "" {
		fmt.Fprintf(stdout, "ERROR: %s: -path is required\n", cmd)
		return exitError
	}
	return -1
}

func produceCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	path := fs.String("path", "", "queue segment (created with -capacity and -size if missing)")
	id := fs.Uint("id", 0, "producer id written into each message: give each producer its own")
	messages := fs.Uint64("messages", 1_000_000, "messages to send (0: until -duration, shutdown or Ctrl-C)")
	duration := fs.Duration("duration", 0, "stop after this long (0: no limit)")
	size := fs.Int("size", defaultSize, "message size in bytes, header included (at most the queue's slot size)")
	capacity := fs.Int("capacity", defaultCapacity, "capacity if the queue is created")
	seed := fs.Uint64("seed", defaultSeed, "payload seed (consumers must use the same)")
	spin := fs.Duration("spin", mpmc.DefaultSpin, "spin budget before sleeping on the futex")
	shutdown := fs.Bool("shutdown", false, "shut the queue down when done, so that consumers drain it and stop")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if code := requirePath(stdout, "produce", *path); code >= 0 {
		return code
	}
	if *id > verify.MaxProducer || *duration < 0 {
		fmt.Fprintf(stdout, "ERROR: produce: -id must be at most %d and -duration not negative\n", verify.MaxProducer)
		return exitError
	}
	q, created, err := openOrCreate(*path, *capacity, *size)
	if err != nil {
		return queueError(stdout, "produce", *path, err)
	}
	defer q.Close()
	if err := checkGeometry(*size, 2); err != nil || *size > q.SlotSize() {
		fmt.Fprintf(stdout, "ERROR: produce: -size %d must be in [%d, slot size %d]\n", *size, 24, q.SlotSize())
		return exitError
	}
	if created {
		fmt.Fprintf(stdout, "created %s: capacity %d, slot size %d (remove it with rm when done)\n", *path, q.Cap(), q.SlotSize())
	}
	q.SetSpin(*spin)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var deadline time.Time
	if *duration > 0 {
		deadline = time.Now().Add(*duration)
	}
	start := time.Now()
	st, err := producerLoop(ctx, q, newMonoClock(), uint32(*id), *messages, deadline, *size, *seed, nil)
	el := time.Since(start)
	fmt.Fprintf(stdout, "produced %d messages as producer %d (seq 0..%d) in %.2f s, %s msg/s; stopped by %s\n",
		st.Messages, *id, int64(st.Messages)-1, el.Seconds(), thousands(uint64(float64(st.Messages)/el.Seconds())), st.Stop)
	if *shutdown {
		q.Shutdown()
		fmt.Fprintf(stdout, "shut the queue down\n")
	}
	if err != nil {
		fmt.Fprintf(stdout, "FAIL: produce: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "OK: produced %d messages as producer %d\n", st.Messages, *id)
	return exitOK
}

// producerTrack is what one consumer saw of one producer.
type producerTrack struct {
	count, first, last, gaps, backwards uint64
}

func consumeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	path := fs.String("path", "", "queue segment (created with -capacity and -size if missing)")
	messages := fs.Uint64("messages", 0, "stop after this many messages (0: until the queue is shut down)")
	duration := fs.Duration("duration", 0, "stop after this long (0: no limit)")
	size := fs.Int("size", defaultSize, "slot size if the queue is created")
	capacity := fs.Int("capacity", defaultCapacity, "capacity if the queue is created")
	seed := fs.Uint64("seed", defaultSeed, "payload seed the producers used")
	spin := fs.Duration("spin", mpmc.DefaultSpin, "spin budget before sleeping on the futex")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if code := requirePath(stdout, "consume", *path); code >= 0 {
		return code
	}
	if *duration < 0 {
		fmt.Fprintf(stdout, "ERROR: consume: -duration must not be negative\n")
		return exitError
	}
	q, created, err := openOrCreate(*path, *capacity, *size)
	if err != nil {
		return queueError(stdout, "consume", *path, err)
	}
	defer q.Close()
	if created {
		fmt.Fprintf(stdout, "created %s: capacity %d, slot size %d (remove it with rm when done)\n", *path, q.Cap(), q.SlotSize())
	}
	q.SetSpin(*spin)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	fmt.Fprintf(stdout, "consuming from %s until it is shut down (Ctrl-C stops)\n", *path)
	tracks := map[uint32]*producerTrack{}
	sink := func(r verify.Record) error {
		if r.Corrupt {
			return nil
		}
		t := tracks[r.Producer]
		switch {
		case t == nil:
			tracks[r.Producer] = &producerTrack{count: 1, first: r.Seq, last: r.Seq}
			return nil
		case r.Seq <= t.last:
			t.backwards++
		case r.Seq > t.last+1:
			t.gaps += r.Seq - t.last - 1
		}
		t.count++
		t.last = max(t.last, r.Seq)
		return nil
	}
	hist := newLatencyHistogram()
	start := time.Now()
	st, err := consumerLoop(ctx, q, newMonoClock(), *messages, 0, *seed, hist, sink, nil)
	el := time.Since(start)
	fmt.Fprintf(stdout, "consumed %d messages in %.2f s; stopped by %s\n", st.Messages, el.Seconds(), st.Stop)
	ids := make([]uint32, 0, len(tracks))
	var backwards uint64
	for id, t := range tracks {
		ids = append(ids, id)
		backwards += t.backwards
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		t := tracks[id]
		fmt.Fprintf(stdout, "producer %d: %d messages, seq %d..%d, %d skipped over, %d not in increasing order\n", id, t.count, t.first, t.last, t.gaps, t.backwards)
	}
	if hist.TotalCount() > 0 {
		q := hist.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
		fmt.Fprintf(stdout, "latency: p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n", ns(q[0]), ns(q[1]), ns(q[2]), ns(q[3]), ns(hist.Max()))
	}
	if len(tracks) > 0 {
		fmt.Fprintf(stdout, "(sequence numbers skipped over went to other consumers, or were sent before this one started)\n")
	}
	for _, s := range st.CorruptSamples {
		fmt.Fprintf(stdout, "corrupt: %s\n", s)
	}
	switch {
	case err != nil:
		fmt.Fprintf(stdout, "FAIL: consume: %v\n", err)
		return exitFail
	case st.Corrupt > 0 || backwards > 0:
		fmt.Fprintf(stdout, "FAIL: consume: %d corrupt messages, %d not in increasing order\n", st.Corrupt, backwards)
		return exitFail
	}
	fmt.Fprintf(stdout, "OK: consumed %d messages from %d producers, every checksum intact, each producer's sequence strictly increasing\n", st.Messages, len(tracks))
	return exitOK
}

func createCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	path := fs.String("path", "", "segment to create (must not exist), e.g. /dev/shm/demo")
	size := fs.Int("size", defaultSize, "slot size: the largest message in bytes")
	capacity := fs.Int("capacity", defaultCapacity, "capacity in messages (power of two)")
	perm := fs.String("perm", "0600", "file mode of the segment, octal")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if code := requirePath(stdout, "create", *path); code >= 0 {
		return code
	}
	mode, err := strconv.ParseUint(*perm, 8, 32)
	if err != nil || mode > 0o777 {
		fmt.Fprintf(stdout, "ERROR: create: -perm %q is not an octal file mode\n", *perm)
		return exitError
	}
	if err := checkGeometry(*size, *capacity); err != nil {
		fmt.Fprintf(stdout, "ERROR: create: %v\n", err)
		return exitError
	}
	q, err := mpmc.Create(*path, mpmc.Config{Capacity: *capacity, SlotSize: *size, Perm: os.FileMode(mode)})
	if err != nil {
		return queueError(stdout, "create", *path, err)
	}
	q.Close()
	fmt.Fprintf(stdout, "OK: created %s: capacity %d, slot size %d, mode %#o (remove it with rm when done)\n", *path, *capacity, *size, mode)
	return exitOK
}

func shutdownCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shutdown", flag.ContinueOnError)
	path := fs.String("path", "", "queue segment to shut down")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if code := requirePath(stdout, "shutdown", *path); code >= 0 {
		return code
	}
	q, err := mpmc.Open(*path)
	if err != nil {
		return queueError(stdout, "shutdown", *path, err)
	}
	defer q.Close()
	if err := q.Shutdown(); err != nil {
		fmt.Fprintf(stdout, "FAIL: shutdown: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "OK: %s shut down: enqueues now fail, consumers drain %d messages and stop\n", *path, q.Len())
	return exitOK
}
