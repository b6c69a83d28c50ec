// Package verify checks the exactly-once delivery of a stress run: given how
// many messages each producer sent and, for each consumer, the ordered list
// of (producer, sequence) pairs it received, it finds every lost, duplicated,
// reordered, corrupt or never-sent message.
//
// Memory is one bit per sent message plus one sequence number per
// (consumer, producer) pair, so millions of messages cost megabytes at most.
// A Verifier is not safe for concurrent use.
package verify

import (
	"fmt"
	"math/bits"
	"strings"
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
}

// Allowance is how many lost and duplicated messages a run may show without
// failing: zero for a normal run; a chaos run that kills consumers allows
// for the messages those consumers had taken but not recorded.
type Allowance struct {
	Lost       uint64
	Duplicated uint64
}

// Example is one offending message.
type Example struct {
	Consumer int    `json:"consumer"` // -1 when not known (a lost message)
	Producer uint32 `json:"producer"`
	Seq      uint64 `json:"seq"`
	// Index is the position of the record in the consumer's stream.
	Index uint64 `json:"index"`
	// Prev is, for a reordering, the sequence number that came before.
	Prev uint64 `json:"prev,omitempty"`
}

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
	Received uint64 `json:"received"` // records read from every consumer
	Unique   uint64 `json:"unique"`   // distinct valid messages received

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
		return strings.Join(s, ", ")
	}
	if r.Lost.Count > r.Allowance.Lost {
		parts = append(parts, fmt.Sprintf("%d lost (first: %s)", r.Lost.Count, list(r.Lost, Example.String)))
	}
	if r.Duplicated.Count > r.Allowance.Duplicated {
		parts = append(parts, fmt.Sprintf("%d duplicated (first: %s)", r.Duplicated.Count, list(r.Duplicated, func(e Example) string {
			return fmt.Sprintf("%v again at consumer %d record %d", e, e.Consumer, e.Index)
		})))
	}
	if r.Reordered.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d not in increasing order (first: %s)", r.Reordered.Count, list(r.Reordered, func(e Example) string {
			return fmt.Sprintf("consumer %d record %d got %v after #%d", e.Consumer, e.Index, e, e.Prev)
		})))
	}
	if r.Corrupt.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d corrupt (first: %s)", r.Corrupt.Count, list(r.Corrupt, func(e Example) string {
			return fmt.Sprintf("consumer %d record %d claiming %v", e.Consumer, e.Index, e)
		})))
	}
	if r.Unknown.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d never sent (first: %s)", r.Unknown.Count, list(r.Unknown, func(e Example) string {
			return fmt.Sprintf("consumer %d record %d claiming %v", e.Consumer, e.Index, e)
		})))
	}
	return strings.Join(parts, "; ")
}

// bitset is a growable set of sequence numbers.
type bitset []uint64

func (b *bitset) testAndSet(i uint64) bool {
	w := i / 64
	if w >= uint64(len(*b)) {
		grown := make(bitset, max(w+1, uint64(2*len(*b))))
		copy(grown, *b)
		*b = grown
	}
	m := uint64(1) << (i % 64)
	old := (*b)[w]&m != 0
	(*b)[w] |= m
	return old
}

// Verifier accumulates what consumers received.
type Verifier struct {
	producers []Producer
	seen      []bitset
	maxSeen   []uint64 // highest seq received + 1, per producer
	res       Result
	consumers int
}

// New returns a Verifier for producers 0 to len(producers)-1.
func New(producers []Producer) *Verifier {
	v := &Verifier{
		producers: producers,
		seen:      make([]bitset, len(producers)),
		maxSeen:   make([]uint64, len(producers)),
	}
	for i, p := range producers {
		if p.Exact {
			v.seen[i] = make(bitset, (p.Sent+63)/64)
			v.res.Sent += p.Sent
		}
	}
	return v
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
	v.consumers++
	return &Consumer{v: v, id: id, last: make([]uint64, len(v.producers))}
}

// Observe checks one record.
func (c *Consumer) Observe(r Record) {
	v := c.v
	e := Example{Consumer: c.id, Producer: r.Producer, Seq: r.Seq, Index: c.index}
	c.index++
	v.res.Received++
	switch {
	case r.Corrupt:
		v.res.Corrupt.add(e)
		return
	case int64(r.Producer) >= int64(len(v.producers)):
		v.res.Unknown.add(e)
		return
	}
	p := v.producers[r.Producer]
	if p.Exact && r.Seq >= p.Sent {
		v.res.Unknown.add(e)
		return
	}
	// Sequence numbers from one producer must strictly increase within
	// one consumer: a repeat of the previous one violates that too.
	if last := c.last[r.Producer]; last != 0 && r.Seq < last {
		e.Prev = last - 1
		v.res.Reordered.add(e)
	}
	c.last[r.Producer] = max(c.last[r.Producer], r.Seq+1)
	v.maxSeen[r.Producer] = max(v.maxSeen[r.Producer], r.Seq+1)
	if v.seen[r.Producer].testAndSet(r.Seq) {
		v.res.Duplicated.add(e)
		return
	}
	v.res.Unique++
}

// Finish counts the messages that were sent and never received, and returns
// the result, judged against allow.
func (v *Verifier) Finish(allow Allowance) Result {
	res := v.res
	res.Lost = Violation{}
	res.Allowance = allow
	for i, p := range v.producers {
		n := p.Sent
		if !p.Exact {
			n = v.maxSeen[i]
		}
		set := v.seen[i]
		for w := uint64(0); w*64 < n; w++ {
			var word uint64
			if w < uint64(len(set)) {
				word = set[w]
			}
			missing := ^word
			if rem := n - w*64; rem < 64 {
				missing &= 1<<rem - 1
			}
			for missing != 0 {
				b := uint64(bits.TrailingZeros64(missing))
				missing &= missing - 1
				res.Lost.add(Example{Consumer: -1, Producer: uint32(i), Seq: w*64 + b})
			}
		}
	}
	return res
}
