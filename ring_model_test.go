package mpmc

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"
)

// TestRingModel drives the ring directly (ring.go), with three participants
// on one segment: single and batch claims on both sides, claims held open
// across other operations (as zero-copy holds are), participants killed
// while holding claims, and recovery sweeps by the survivors. Every result
// is checked against a model of each position's state, and so is the rule
// that matters most: recovery never takes over a live participant's claim,
// and always recovers a dead one's.
func TestRingModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		capacity := uint64(1) << rapid.IntRange(1, 3).Draw(rt, "log2 capacity")
		p := segPath(t)
		defer os.Remove(p)
		q0, err := Create(p, Config{Capacity: int(capacity), SlotSize: 8})
		if err != nil {
			rt.Fatal(err)
		}
		handles := []*Queue{q0}
		for range 2 {
			h, err := Open(p)
			if err != nil {
				rt.Fatal(err)
			}
			handles = append(handles, h)
		}
		defer func() {
			for _, h := range handles {
				h.Close()
			}
		}()
		// Liveness is the model's: a killed participant's lock is in
		// fact still held by this process.
		dead := make([]bool, len(handles))
		for _, h := range handles {
			h.ring.alive = func(i int) (bool, error) { return i < len(dead) && !dead[i], nil }
		}

		m := newRingModel(capacity)
		type hold struct {
			h    int
			side side
			pos  uint64
			rec  *atomic.Uint64
		}
		var holds []hold
		nextRec := make([]int, len(handles))
		record := func(h int) *atomic.Uint64 {
			// A record that no hold is using, as pin.go gives each call
			// one of its own.
			for {
				k := pinnedRecords + nextRec[h]%(recordsPerEntry-pinnedRecords)
				nextRec[h]++
				r := handles[h].ring.record(handles[h].self, k)
				inUse := false
				for _, ho := range holds {
					inUse = inUse || ho.rec == r
				}
				if !inUse {
					return r
				}
			}
		}
		live := func(rt *rapid.T) int {
			var alive []int
			for i := range handles {
				if !dead[i] {
					alive = append(alive, i)
				}
			}
			return rapid.SampledFrom(alive).Draw(rt, "handle")
		}
		seq := 0
		msg := func() []byte { seq++; return []byte(fmt.Sprint(seq)) }

		rt.Repeat(map[string]func(*rapid.T){
			"enqueue": func(rt *rapid.T) {
				h := live(rt)
				n := rapid.IntRange(1, 3).Draw(rt, "n")
				msgs := make([][]byte, n)
				for i := range msgs {
					msgs[i] = msg()
				}
				got, err := handles[h].ring.enqueue(record(h), msgs)
				want := m.free()
				if want == 0 {
					if err != ErrFull || got != 0 {
						rt.Fatalf("enqueue on a full ring = %d, %v", got, err)
					}
					return
				}
				if err != nil || got != min(n, want) {
					rt.Fatalf("enqueue of %d with %d free = %d, %v", n, want, got, err)
				}
				for _, b := range msgs[:got] {
					m.publish(m.claim(-1), string(b))
				}
			},
			"dequeue": func(rt *rapid.T) {
				h := live(rt)
				k := rapid.IntRange(1, 3).Draw(rt, "k")
				bufs, sizes := make([][]byte, k), make([]int, k)
				for i := range bufs {
					bufs[i] = make([]byte, 8)
				}
				got, err := handles[h].ring.dequeue(record(h), bufs, sizes)
				want, why := m.take(k)
				if len(want) == 0 {
					if err != why || got != 0 {
						rt.Fatalf("dequeue with nothing ready = %d, %v; want %v", got, err, why)
					}
					return
				}
				if err != nil || got != len(want) {
					rt.Fatalf("dequeue = %d, %v; want %q", got, err, want)
				}
				for i, w := range want {
					if string(bufs[i][:sizes[i]]) != w {
						rt.Fatalf("dequeue message %d = %q, want %q", i, bufs[i][:sizes[i]], w)
					}
				}
			},
			"hold a claim": func(rt *rapid.T) {
				if len(holds) >= 8 {
					rt.Skip("enough holds")
				}
				h := live(rt)
				rec := record(h)
				pos, n, err := handles[h].ring.claimWrite(rec, 1)
				if m.free() == 0 {
					if err != ErrFull {
						rt.Fatalf("claimWrite on a full ring = %v", err)
					}
					return
				}
				if err != nil || n != 1 || pos != m.tail {
					rt.Fatalf("claimWrite = %d, %d, %v; want position %d", pos, n, err, m.tail)
				}
				m.claim(h)
				holds = append(holds, hold{h, producers, pos, rec})
			},
			"hold a take": func(rt *rapid.T) {
				if len(holds) >= 8 {
					rt.Skip("enough holds")
				}
				h := live(rt)
				rec := record(h)
				pos, _, _, err := handles[h].ring.take(rec)
				want, why := m.take(1)
				if len(want) == 0 {
					if err != why {
						rt.Fatalf("take with nothing ready = %v, want %v", err, why)
					}
					return
				}
				if err != nil || string(handles[h].ring.payload(handles[h].ring.slot(pos))[:len(want[0])]) != want[0] {
					rt.Fatalf("take = %d, %v; want %q", pos, err, want[0])
				}
				m.state[pos] = posState{kind: reading, owner: h}
				holds = append(holds, hold{h, consumers, pos, rec})
			},
			"finish a hold": func(rt *rapid.T) {
				var mine []int
				for i, ho := range holds {
					if !dead[ho.h] {
						mine = append(mine, i)
					}
				}
				if len(mine) == 0 {
					rt.Skip("no live hold")
				}
				i := rapid.SampledFrom(mine).Draw(rt, "hold")
				ho := holds[i]
				holds = append(holds[:i], holds[i+1:]...)
				r := &handles[ho.h].ring
				if st := m.state[ho.pos]; st.owner != ho.h || st.kind == done || st.kind == skipped || st.kind == full {
					rt.Fatalf("hold at %d of participant %d: model says %+v (taken over?)", ho.pos, ho.h, st)
				}
				if ho.side == consumers {
					r.release(ho.pos)
					ho.rec.Store(recInUse)
					m.state[ho.pos] = posState{kind: done}
					return
				}
				if rapid.Bool().Draw(rt, "commit") {
					b := msg()
					r.write(ho.pos, b, 0, ho.pos)
					m.publish(ho.pos, string(b))
				} else {
					storeRelease(&r.slot(ho.pos).seq, seqWord(ho.pos+1, slotSkipped))
					m.state[ho.pos] = posState{kind: skipped}
				}
				ho.rec.Store(recInUse)
			},
			"kill": func(rt *rapid.T) {
				alive := 0
				for _, d := range dead {
					if !d {
						alive++
					}
				}
				if alive == 1 {
					rt.Skip("keep one survivor")
				}
				h := live(rt)
				dead[h] = true
				// Its claims stay recorded; they are recovered by the next
				// sweep, as a dead process's are.
			},
			"recover": func(rt *rapid.T) {
				h := live(rt)
				rec := record(h)
				if again := handles[h].ring.recoverAll(rec); len(again) != 0 {
					rt.Fatalf("recoverAll returned messages to redeliver without Redeliver")
				}
				rec.Store(recInUse)
				for pos, st := range m.state {
					if st.owner < 0 || !dead[st.owner] {
						continue
					}
					switch st.kind {
					case writing:
						m.state[pos] = posState{kind: skipped}
					case reading:
						m.state[pos] = posState{kind: done}
					}
				}
			},
			"": func(rt *rapid.T) {
				if got, want := handles[0].ring.length(), m.length(); got != want {
					rt.Fatalf("length = %d, model says %d; slots %x %x pos %x %x model %+v", got, want, handles[0].ring.slot(0).seq.Load(), handles[0].ring.slot(1).seq.Load(), handles[0].ring.pos[producers].Load(), handles[0].ring.pos[consumers].Load(), m)
				}
			},
		})
	})
}

type posKind int

const (
	writing posKind = iota // claimed by a producer, not published
	full                   // published, not taken
	skipped                // given up, or recovered from a dead producer
	reading                // taken, not released
	done                   // released (or passed over)
)

type posState struct {
	kind  posKind
	owner int // the participant holding a claim, -1 for none
	msg   string
}

// ringModel is what every position of the ring holds.
type ringModel struct {
	capacity   uint64
	head, tail uint64 // next position to take, to claim
	state      map[uint64]posState
}

func newRingModel(capacity uint64) *ringModel {
	return &ringModel{capacity: capacity, state: map[uint64]posState{}}
}

// free is how many consecutive positions from the tail have a free slot.
func (m *ringModel) free() int {
	return freeSlots(m.tail, m.capacity, func(pos uint64) posKind { return m.state[pos].kind })
}

// freeSlots is how many consecutive positions from tail have a free slot,
// in a ring of capacity slots where position pos is in state kind(pos): a
// slot is free before its first lap and once the position a lap back is
// done.
func freeSlots(tail, capacity uint64, kind func(pos uint64) posKind) int {
	n := 0
	for pos := tail; pos < tail+capacity; pos++ {
		if pos >= capacity && kind(pos-capacity) != done {
			break
		}
		n++
	}
	return n
}

func (m *ringModel) claim(owner int) uint64 {
	pos := m.tail
	m.tail++
	m.state[pos] = posState{kind: writing, owner: owner}
	return pos
}

func (m *ringModel) publish(pos uint64, msg string) {
	m.state[pos] = posState{kind: full, owner: -1, msg: msg}
}

// take takes up to k messages at the head, passing skipped positions, as
// one claim does; with none, it says why.
func (m *ringModel) take(k int) ([]string, error) {
	var out []string
	pos := m.head
	for ; pos < m.tail && len(out) < k; pos++ {
		st := m.state[pos]
		if st.kind == writing {
			break
		}
		if st.kind == full {
			out = append(out, st.msg)
		}
		m.state[pos] = posState{kind: done, owner: -1}
	}
	// A claim that took only skipped positions goes on looking; what
	// it passed is gone either way.
	m.head = pos
	if len(out) > 0 {
		return out, nil
	}
	if pos < m.tail {
		return nil, errPending
	}
	return nil, ErrEmpty
}

func (m *ringModel) length() int {
	return queued(m.head, m.tail, func(pos uint64) posKind { return m.state[pos].kind })
}

// queued is how many of the positions from head up to tail, position pos
// in state kind(pos), are not skipped: the queue's length.
func queued(head, tail uint64, kind func(pos uint64) posKind) int {
	n := 0
	for pos := head; pos < tail; pos++ {
		if kind(pos) != skipped {
			n++
		}
	}
	return n
}
