package mpmc_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/shmq/mpmc"
)

// One process creates the queue; any number of others Open the same path.
// Here both handles live in one process to keep the example self-contained.
func Example() {
	path := filepath.Join("/dev/shm", fmt.Sprintf("mpmc-example-%d", os.Getpid()))
	q, err := mpmc.Create(path, mpmc.Config{Capacity: 1024, SlotSize: 256})
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(path) // the segment outlives its handles until removed
	defer q.Close()

	consumer, err := mpmc.Open(path) // usually in another process
	if err != nil {
		log.Fatal(err)
	}
	defer consumer.Close()

	ctx := context.Background()
	for _, m := range []string{"hello", "from", "another", "process"} {
		if err := q.Enqueue(ctx, []byte(m)); err != nil {
			log.Fatal(err)
		}
	}
	q.Shutdown() // no more messages: consumers drain, then see ErrClosed

	buf := make([]byte, consumer.SlotSize())
	for {
		n, err := consumer.Dequeue(ctx, buf)
		if errors.Is(err, mpmc.ErrClosed) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// hello
	// from
	// another
	// process
}

// TryEnqueue and TryDequeue never wait: they report a full or empty queue
// with an error, for callers that have something better to do.
func ExampleQueue_TryEnqueue() {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: 2, SlotSize: 8}) // no file to name or remove: this example stays in one process
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	for _, m := range []string{"a", "b", "c"} {
		err := q.TryEnqueue([]byte(m))
		fmt.Printf("%s: %v\n", m, err)
	}
	fmt.Println(errors.Is(q.TryEnqueue(make([]byte, 9)), mpmc.ErrTooLarge))

	buf := make([]byte, 8)
	for range 3 {
		n, err := q.TryDequeue(buf)
		fmt.Printf("%q %v\n", buf[:n], err)
	}
	// Output:
	// a: <nil>
	// b: <nil>
	// c: mpmc: queue is full
	// true
	// "a" <nil>
	// "b" <nil>
	// "" mpmc: queue is empty
}

// Open validates a file before mapping it: anything that is not a queue
// segment is refused with an error matching ErrBadSegment.
func ExampleOpen() {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("not-a-queue-%d", os.Getpid()))
	os.WriteFile(path, []byte("just some text"), 0o600)
	defer os.Remove(path)

	_, err := mpmc.Open(path)
	fmt.Println(errors.Is(err, mpmc.ErrBadSegment))
	// Output:
	// true
}

// Enqueue and Dequeue wait, spinning briefly and then sleeping, until they
// can go on or their context is done.
func ExampleQueue_Dequeue() {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: 8, SlotSize: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10e6) // 10ms
	defer cancel()
	_, err = q.Dequeue(ctx, make([]byte, 64))
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output:
	// true
}

// Batches move many messages with one claim each way: the producer's batch
// sits in consecutive positions, and the consumer takes what is there, up
// to its buffers, in one call.
func ExampleQueue_EnqueueBatch() {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: 64, SlotSize: 32})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	ctx := context.Background()
	msgs := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
	if _, err := q.EnqueueBatch(ctx, msgs); err != nil {
		log.Fatal(err)
	}
	bufs, sizes := make([][]byte, 8), make([]int, 8)
	for i := range bufs {
		bufs[i] = make([]byte, q.SlotSize())
	}
	n, err := q.DequeueBatch(ctx, bufs, sizes)
	if err != nil {
		log.Fatal(err)
	}
	for i := range n {
		fmt.Println(string(bufs[i][:sizes[i]]))
	}
	// Output:
	// one
	// two
	// three
}

// Zero-copy: the producer writes its message straight into the slot and
// commits it; the consumer reads it where it lies and releases the slot.
// Neither allocates, and a process killed while holding either is recovered
// like one killed in Enqueue or Dequeue.
func ExampleQueue_Reserve() {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: 8, SlotSize: 4096})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	ctx := context.Background()
	r, err := q.Reserve(ctx)
	if err != nil {
		log.Fatal(err)
	}
	n := copy(r.Bytes(), "written in place")
	if err := r.Commit(n); err != nil {
		log.Fatal(err)
	}

	t, err := q.Take(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (message %d)\n", t.Bytes(), t.ID())
	if err := t.Release(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// written in place (message 0)
}
