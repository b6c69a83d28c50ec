package main

import "sync"

// condRing is a bounded FIFO of uint64 guarded by a mutex, with one
// sync.Cond for "not empty" and one for "not full": the textbook blocking
// queue, as a baseline.
type condRing struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	buf      []uint64
	head     int // next to take
	n        int // items held
}

// newCondRing returns an empty ring of the given capacity.
func newCondRing(capacity int) *condRing {
	r := &condRing{buf: make([]uint64, capacity)}
	r.notEmpty.L = &r.mu
	r.notFull.L = &r.mu
	return r
}

// put appends v, waiting while the ring is full.
func (r *condRing) put(v uint64) {
	r.mu.Lock()
	for r.n == len(r.buf) {
		r.notFull.Wait()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = v
	r.n++
	r.mu.Unlock()
	r.notEmpty.Signal()
}

// get removes the oldest item, waiting while the ring is empty.
func (r *condRing) get() uint64 {
	r.mu.Lock()
	for r.n == 0 {
		r.notEmpty.Wait()
	}
	v := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.mu.Unlock()
	r.notFull.Signal()
	return v
}
