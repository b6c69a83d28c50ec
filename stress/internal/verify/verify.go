// Package verify checks the exactly-once delivery of a stress run: given, for
// each consumer, the ordered stream of (producer, sequence) pairs it
// received, and at the end how many messages each producer sent, it finds
// every lost, duplicated, reordered, corrupt or never-sent message.
//
// Memory is one bit per message received plus one sequence number per
// (consumer, producer) pair: millions of messages cost megabytes at most. The
// streams of different consumers may be fed from different goroutines at
// once (each Consumer from one goroutine); Finish must come after them all.
package verify

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"sync"
)

// maxExamples is how many offending messages of each kind are kept.
const maxExamples = 5

// Producer says what a producer sent.
type Producer struct {
	// Sent is the number of messages the producer reports having enqueued:
	// sequence numbers 0 to Sent-1.
	Sent uint64
	// Exact is false when the producer could not report (it was killed):
	// then any sequence number may have been sent, and only gaps below the
	// highest sequence number received count as lost.
	Exact bool
	// MaySend, for an exact producer, is how many sequence numbers from
	// Sent on may have been sent without being acknowledged: a producer
	// killed after its Enqueue published a message but before it recorded
	// the acknowledgement. Receiving them is no offence (they are counted
	// in Result.Unacked); receiving anything beyond them is.
	MaySend uint64
}

// Allowance is how many lost and duplicated messages a run may show without
// failing: zero for a normal run; a chaos run that kills consumers allows
// for the messages those consumers had taken but not recorded.
type Allowance struct {
	Lost       uint64 `json:"lost"`
	Duplicated uint64 `json:"duplicated"`
}

// Example is one offending message.
type Example struct {
	// Consumer is the consumer that received it, -1 when there is none (a
	// lost message) or it is not known (a never-sent message found at the
	// end).
	Consumer int    `json:"consumer"`
	Producer uint32 `json:"producer"`
	Seq      uint64 `json:"seq"`
	// Index is the position of the record in the consumer's stream.
	Index uint64 `json:"index"`
	// Prev is, for a reordering, the highest sequence number of the same
	// producer that the consumer had received before.
	Prev uint64 `json:"prev,omitempty"`
}

// String names the message as p<producer>#<seq>.
func (e Example) String() string { return fmt.Sprintf("p%d#%d", e.Producer, e.Seq) }

// Violation counts one kind of offence and keeps its first examples.
type Violation struct {
	Count    uint64    `json:"count"`
	Examples []Example `json:"examples,omitempty"`
}

func (v *Violation) add(e Example) {
	v.Count++
	if len(v.Examples) < maxExamples {
		v.Examples = append(v.Examples, e)
	}
}

// Result is the outcome of a verification.
type Result struct {
	Sent     uint64 `json:"sent"`     // messages the producers reported (exact ones)
	Received uint64 `json:"received"` // records of every consumer
	Unique   uint64 `json:"unique"`   // distinct valid messages received
	// Unacked counts the distinct messages received whose sending was not
	// acknowledged (Producer.MaySend).
	Unacked uint64 `json:"unacked"`

	Lost       Violation `json:"lost"`       // sent, never received
	Duplicated Violation `json:"duplicated"` // received more than once
	Reordered  Violation `json:"reordered"`  // not above its predecessor, within one consumer
	Corrupt    Violation `json:"corrupt"`    // failed its checksum or payload check
	Unknown    Violation `json:"unknown"`    // a producer or sequence number never sent
	Allowance  Allowance `json:"allowance"`
}

// OK reports whether the run delivered every message exactly once, intact
// and in order, within the allowance.
func (r Result) OK() bool {
	return r.Corrupt.Count == 0 && r.Unknown.Count == 0 && r.Reordered.Count == 0 &&
		r.Lost.Count <= r.Allowance.Lost && r.Duplicated.Count <= r.Allowance.Duplicated
}

// Problems describes each violation with its first offending messages, for
// a FAIL line; it is empty when OK.
func (r Result) Problems() string {
	var parts []string
	list := func(v Violation, f func(Example) string) string {
		s := make([]string, len(v.Examples))
		for i, e := range v.Examples {
			s[i] = f(e)
		}
		if v.Count > uint64(len(s)) {
			s = append(s, "...")
		}
		return strings.Join(s, ", ")
	}
	at := func(e Example) string {
		if e.Consumer < 0 {
			return e.String()
		}
		return fmt.Sprintf("%v at consumer %d record %d", e, e.Consumer, e.Index)
	}
	if r.Lost.Count > r.Allowance.Lost {
		parts = append(parts, fmt.Sprintf("%d lost (%s)", r.Lost.Count, list(r.Lost, Example.String)))
	}
	if r.Duplicated.Count > r.Allowance.Duplicated {
		parts = append(parts, fmt.Sprintf("%d duplicated (%s)", r.Duplicated.Count, list(r.Duplicated, func(e Example) string {
			return fmt.Sprintf("%v again at consumer %d record %d", e, e.Consumer, e.Index)
		})))
	}
	if r.Reordered.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d not in increasing order (%s)", r.Reordered.Count, list(r.Reordered, func(e Example) string {
			return fmt.Sprintf("%v after #%d at consumer %d record %d", e, e.Prev, e.Consumer, e.Index)
		})))
	}
	if r.Corrupt.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d corrupt (%s)", r.Corrupt.Count, list(r.Corrupt, func(e Example) string {
			return fmt.Sprintf("claiming %v", at(e))
		})))
	}
	if r.Unknown.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d never sent (%s)", r.Unknown.Count, list(r.Unknown, at)))
	}
	return strings.Join(parts, "; ")
}

// A bitset of sequence numbers, in chunks allocated on first use, so that a
// wild sequence number costs one chunk, not memory up to it.
const (
	chunkBits  = 1 << 16
	chunkWords = chunkBits / 64
)

type chunk [chunkWords]uint64

type seqSet struct {
	chunks  map[uint64]*chunk
	lastIdx uint64
	last    *chunk
	maxSeq1 uint64 // highest sequence number seen + 1
}

// testAndSet sets seq and reports whether it was set already.
func (s *seqSet) testAndSet(seq uint64) bool {
	idx := seq / chunkBits
	c := s.last
	if c == nil || idx != s.lastIdx {
		if c = s.chunks[idx]; c == nil {
			c = new(chunk)
			s.chunks[idx] = c
		}
		s.last, s.lastIdx = c, idx
	}
	bit := seq % chunkBits
	m := uint64(1) << (bit % 64)
	w := &c[bit/64]
	old := *w&m != 0
	*w |= m
	s.maxSeq1 = max(s.maxSeq1, seq+1)
	return old
}

// Verifier accumulates what consumers received.
type Verifier struct {
	mu        sync.Mutex
	producers int
	limits    []uint64 // known upper bounds on Sent, 0 = none
	seen      []seqSet
	res       Result
}

// New returns a Verifier for producers 0 to producers-1.
func New(producers int) *Verifier {
	v := &Verifier{producers: producers, limits: make([]uint64, producers), seen: make([]seqSet, producers)}
	for i := range v.seen {
		v.seen[i].chunks = map[uint64]*chunk{}
	}
	return v
}

// SetLimit declares that producer p sends at most limit messages, so that a
// message above it is reported with the consumer that received it.
func (v *Verifier) SetLimit(p int, limit uint64) {
	v.mu.Lock()
	v.limits[p] = limit
	v.mu.Unlock()
}

// Grow raises the number of producers to n (it never lowers it): producers
// that join later, such as the replacements of killed producers in a chaos
// run, get the next ids. Records of a producer id not yet grown to are
// reported as never sent.
func (v *Verifier) Grow(n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.producers < n {
		v.limits = append(v.limits, 0)
		v.seen = append(v.seen, seqSet{chunks: map[uint64]*chunk{}})
		v.producers++
	}
}

// Producers returns the number of producers.
func (v *Verifier) Producers() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.producers
}

// Consumer is the verifier's view of one consumer's stream.
type Consumer struct {
	v     *Verifier
	id    int
	last  []uint64 // last seq + 1 from each producer, 0 = none yet
	index uint64
}

// Consumer starts the stream of consumer id; its records must then be
// passed to Observe in the order the consumer received them.
func (v *Verifier) Consumer(id int) *Consumer {
	return &Consumer{v: v, id: id, last: make([]uint64, v.producers)}
}

// Observe checks one record.
func (c *Consumer) Observe(r Record) {
	c.v.mu.Lock()
	c.observe(r)
	c.v.mu.Unlock()
}

// ObserveBatch checks consecutive records of the stream.
func (c *Consumer) ObserveBatch(rs []Record) {
	c.v.mu.Lock()
	for _, r := range rs {
		c.observe(r)
	}
	c.v.mu.Unlock()
}

func (c *Consumer) observe(r Record) {
	v := c.v
	e := Example{Consumer: c.id, Producer: r.Producer, Seq: r.Seq, Index: c.index}
	c.index++
	v.res.Received++
	switch {
	case r.Corrupt:
		v.res.Corrupt.add(e)
		return
	case int64(r.Producer) >= int64(v.producers):
		v.res.Unknown.add(e)
		return
	case v.limits[r.Producer] != 0 && r.Seq >= v.limits[r.Producer]:
		v.res.Unknown.add(e)
		return
	}
	if int(r.Producer) >= len(c.last) { // producers grew since c began
		c.last = append(c.last, make([]uint64, v.producers-len(c.last))...)
	}
	// Sequence numbers from one producer must strictly increase within
	// one consumer: a repeat of the previous one violates that too.
	if last := c.last[r.Producer]; last != 0 && r.Seq < last {
		e.Prev = last - 1
		v.res.Reordered.add(e)
	}
	c.last[r.Producer] = max(c.last[r.Producer], r.Seq+1)
	if v.seen[r.Producer].testAndSet(r.Seq) {
		v.res.Duplicated.add(e)
		return
	}
	v.res.Unique++
}

// Finish takes what each producer sent (one entry per producer), counts the
// messages sent and never received and those received but never sent, and
// returns the result, judged against allow.
func (v *Verifier) Finish(producers []Producer, allow Allowance) Result {
	v.mu.Lock()
	defer v.mu.Unlock()
	res := v.res
	res.Lost = Violation{}
	res.Unknown.Examples = append([]Example(nil), res.Unknown.Examples...)
	res.Allowance = allow
	for i := range v.producers {
		p := Producer{}
		if i < len(producers) {
			p = producers[i]
		}
		set := &v.seen[i]
		n := set.maxSeq1
		if p.Exact {
			res.Sent += p.Sent
			n = p.Sent
		}
		// Lost: every bit below n that is not set.
		for idx := uint64(0); idx*chunkBits < n; idx++ {
			c := set.chunks[idx]
			for w := uint64(0); w < chunkWords && idx*chunkBits+w*64 < n; w++ {
				var word uint64
				if c != nil {
					word = c[w]
				}
				base := idx*chunkBits + w*64
				missing := ^word
				if rem := n - base; rem < 64 {
					missing &= 1<<rem - 1
				}
				for missing != 0 {
					b := uint64(bits.TrailingZeros64(missing))
					missing &= missing - 1
					res.Lost.add(Example{Consumer: -1, Producer: uint32(i), Seq: base + b})
				}
			}
		}
		// Unacked and unknown: bits set at or above what the producer
		// sent; the first MaySend of them are unacknowledged sends.
		if !p.Exact || set.maxSeq1 <= p.Sent {
			continue
		}
		idxs := make([]uint64, 0, len(set.chunks))
		for idx := range set.chunks {
			if (idx+1)*chunkBits > p.Sent {
				idxs = append(idxs, idx)
			}
		}
		sort.Slice(idxs, func(a, b int) bool { return idxs[a] < idxs[b] })
		for _, idx := range idxs {
			for w, word := range set.chunks[idx] {
				for word != 0 {
					b := uint64(bits.TrailingZeros64(word))
					word &= word - 1
					switch seq := idx*chunkBits + uint64(w)*64 + b; {
					case seq < p.Sent:
					case seq-p.Sent < p.MaySend:
						res.Unacked++
					default:
						res.Unique--
						res.Unknown.add(Example{Consumer: -1, Producer: uint32(i), Seq: seq})
					}
				}
			}
		}
	}
	return res
}
