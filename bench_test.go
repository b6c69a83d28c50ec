package mpmc

import (
	"context"
	"sync"
	"testing"
)

// In-process benchmarks: ns per message (ns/op), each message enqueued by
// one of the producers and dequeued by one of the consumers, against a
// buffered channel of the same capacity. Each goroutine has a handle of its
// own, as separate processes would. Cross-process figures come from the
// bench module (make bench).

const benchCapacity = 1024

// benchPairs runs bench with one producer and one consumer (1P1C), and
// with four of each (4P4C).
func benchPairs(b *testing.B, bench func(b *testing.B, n int)) {
	for _, pc := range []struct {
		name string
		n    int
	}{{"1P1C", 1}, {"4P4C", 4}} {
		b.Run(pc.name, func(b *testing.B) { bench(b, pc.n) })
	}
}

func BenchmarkQueue(b *testing.B) { benchPairs(b, benchQueue) }

func BenchmarkChannel(b *testing.B) { benchPairs(b, benchChannel) }

// BenchmarkUncontended is one TryEnqueue and one TryDequeue on one
// goroutine: the floor for a one-message-at-a-time API.
func BenchmarkUncontended(b *testing.B) {
	q, _ := newTestQueue(b, benchCapacity, 64)
	msg, buf := make([]byte, 64), make([]byte, 64)
	for b.Loop() {
		if err := q.TryEnqueue(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := q.TryDequeue(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func benchQueue(b *testing.B, n int) {
	q, p := newTestQueue(b, benchCapacity, 64)
	ctx := context.Background()
	var wg sync.WaitGroup
	per := b.N / n
	b.SetBytes(64)
	b.ResetTimer()
	for i := range 2 * n {
		h := openTestQueue(b, p)
		wg.Go(func() {
			msg := make([]byte, 64)
			if i < n {
				for range per {
					if err := h.Enqueue(ctx, msg); err != nil {
						b.Error(err)
						return
					}
				}
				return
			}
			for range per {
				if _, err := h.Dequeue(ctx, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	_ = q
}

func benchChannel(b *testing.B, n int) {
	ch := make(chan [64]byte, benchCapacity)
	var wg sync.WaitGroup
	per := b.N / n
	b.SetBytes(64)
	b.ResetTimer()
	for i := range 2 * n {
		wg.Go(func() {
			var msg [64]byte
			if i < n {
				for range per {
					ch <- msg
				}
				return
			}
			for range per {
				msg = <-ch
			}
			_ = msg
		})
	}
	wg.Wait()
}
