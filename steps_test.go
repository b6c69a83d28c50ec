//go:build mpmc_hooks

package mpmc

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// TestSteps is TestRingModel one level down: handles on one segment run
// Queue operations in goroutines of their own, and the test interleaves
// them at the granularity of the protocol's steps (the crash hooks,
// hooks.go). Every operation stops at each hook it reaches and waits for
// the scheduler (the rapid state machine), which runs exactly one goroutine
// at a time, so a schedule is deterministic and replays when rapid shrinks
// it. The actions: start an operation on an idle handle, step a handle to
// its next hook or to the end of its call, kill a handle where it stands
// (its goroutine never resumes: a process killed at that step), open a new
// handle, and recover (Queue.recoverAll, or the stall check that operations
// make, run with a zero timeout). A model of every position's state is
// updated at the step where the real code's effect becomes visible, and
// after every action the ring's positions, every slot's sequence word,
// every live handle's claim records, Len and the recovery counters must be
// what the model says; each call's result and the messages it returns
// likewise. At the end nobody else dies, every live operation runs to its
// end, a recovery sweep runs, and a drain must yield exactly the model's
// messages: every published message is delivered exactly once unless a
// consumer that had taken it died; each consumer sees each producer's
// messages in order.
//
// Not covered: the pinned fast paths (enqueue1, dequeue1), since a pinned
// goroutine must not park; Config.Redeliver; and the per-handle memory of
// the stall check, which the model does not keep: a recovery made by an
// operation's own stall check (eager operations, with a zero timeout) is
// allowed when the claim is a dead one that no live record covers, not
// required. The stall action and recoverAll are predicted exactly.
func TestSteps(t *testing.T) {
	setBlockingHook(t, stepHook) // every call on the unpinned path: hooks may park
	stepStats = map[string]int{}
	if testing.Verbose() {
		defer func() { t.Logf("what the runs did: %v", stepStats) }()
	}
	rapid.Check(t, func(rt *rapid.T) {
		s := newStepTest(rt)
		defer s.cleanup()
		for range rapid.IntRange(0, 400).Draw(rt, "actions") {
			s.action(rt)
		}
		s.finish(rt)
	})
}

// stepStats counts what the runs did, for -v.
var stepStats map[string]int

// hookHeld is the test's own stop: a zero-copy hold (Reservation, Taken)
// returned to its caller and not yet finished.
const hookHeld hookPoint = 1000

// stepRunning is the one operation the scheduler let run. Exactly one
// goroutine runs ring code at a time, so the hook knows whose it is.
var stepRunning atomic.Pointer[stepOp]

func stepHook(p hookPoint) {
	if p == hookJoinLocked || p == hookCreateBeforeReady {
		return // Create and Open, made by the test goroutine itself
	}
	stepPark(p)
}

// stepPark stops the running operation at p until the scheduler resumes it.
func stepPark(p hookPoint) {
	o := stepRunning.Swap(nil)
	if o == nil {
		panic(fmt.Sprintf("hook %d reached by a goroutine the scheduler did not run", p))
	}
	if o.free.Load() {
		stepRunning.Store(o)
		return
	}
	o.events <- stepEvent{at: p}
	<-o.resume
}

type stepKind int

const (
	opEnqueue      stepKind = iota // TryEnqueue
	opEnqueueBatch                 // TryEnqueueBatch
	opReserve                      // TryReserve, then Commit or Abort
	opDequeue                      // TryDequeue
	opDequeueBatch                 // TryDequeueBatch
	opTake                         // TryTake, then Release
)

var stepKindNames = []string{"TryEnqueue", "TryEnqueueBatch", "TryReserve", "TryDequeue", "TryDequeueBatch", "TryTake"}

func (k stepKind) String() string { return stepKindNames[k] }

func (k stepKind) side() side {
	if k <= opReserve {
		return producers
	}
	return consumers
}

// hookStart is where an operation is before its first step.
const hookStart hookPoint = -1

// stepOp is one operation of one handle, run by a goroutine of its own.
type stepOp struct {
	h      int
	kind   stepKind
	msgs   []string    // to enqueue
	max    int         // most messages to take
	commit bool        // Commit the Reservation, or Abort it
	eager  bool        // a zero recovery timeout: its stall checks recover
	free   atomic.Bool // run to the end without stopping (cleanup)
	resume chan struct{}
	events chan stepEvent

	// The scheduler's view of it.
	at        hookPoint
	intentPos uint64 // the claim recorded at hookBeforeClaim (E1, D1)
	intentN   int
	claiming  bool // a claim won and not finished
	claimPos  uint64
	claimN    int
	idx       int      // the claim's position being written or copied
	claimMsgs []string // messages of the claim, by position
	assigned  int      // messages given positions so far
	lastShort bool     // its last claim got fewer positions than it asked
	got       []string // messages its claims took, to return
	gotPos    []uint64
	returned  bool // its call returned: the goroutine is gone
}

type stepEvent struct {
	at   hookPoint
	done bool
	n    int
	err  error
	out  []string
	id   uint64 // Taken.ID
}

func (o *stepOp) run(q *Queue) stepEvent {
	switch o.kind {
	case opEnqueue:
		err := q.TryEnqueue([]byte(o.msgs[0]))
		if err != nil {
			return stepEvent{err: err}
		}
		return stepEvent{n: 1}
	case opEnqueueBatch:
		msgs := make([][]byte, len(o.msgs))
		for i, m := range o.msgs {
			msgs[i] = []byte(m)
		}
		n, err := q.TryEnqueueBatch(msgs)
		return stepEvent{n: n, err: err}
	case opReserve:
		r, err := q.TryReserve()
		if err != nil {
			return stepEvent{err: err}
		}
		stepPark(hookHeld)
		if !o.commit {
			return stepEvent{err: r.Abort()}
		}
		return stepEvent{n: 1, err: r.Commit(copy(r.Bytes(), o.msgs[0]))}
	case opDequeue:
		buf := make([]byte, 8)
		n, err := q.TryDequeue(buf)
		if err != nil {
			return stepEvent{err: err}
		}
		return stepEvent{n: 1, out: []string{string(buf[:n])}}
	case opDequeueBatch:
		bufs, sizes := make([][]byte, o.max), make([]int, o.max)
		for i := range bufs {
			bufs[i] = make([]byte, 8)
		}
		n, err := q.TryDequeueBatch(bufs, sizes)
		ev := stepEvent{n: n, err: err}
		for i := range n {
			ev.out = append(ev.out, string(bufs[i][:sizes[i]]))
		}
		return ev
	default: // opTake
		tk, err := q.TryTake()
		if err != nil {
			return stepEvent{err: err}
		}
		stepPark(hookHeld)
		ev := stepEvent{n: 1, out: []string{string(tk.Bytes())}, id: tk.ID()}
		ev.err = tk.Release()
		return ev
	}
}

type stepHandle struct {
	q       *Queue
	dead    bool
	op      *stepOp
	timeout time.Duration
	last    map[int]int // by producer: the last message delivered here
}

type stepPos struct {
	kind  posKind // ring_model_test.go
	owner int     // the handle holding the claim, -1 for none
	msg   string
	skip  bool // taken (reading) while skipped
}

type stepTest struct {
	path     string
	capacity uint64
	handles  []*stepHandle
	dead     [maxParticipants]atomic.Bool // by participant index: the liveness the rings see

	head, tail uint64
	pos        map[uint64]stepPos
	seq        int

	published, acked, delivered, lost map[string]bool
	recoveredWrites, recoveredReads   uint64
}

// The recovery timeout of operations that are not eager: one no run
// reaches, so their stall checks never recover (but see reconcile). Eager
// operations and the stall action use zero.
const stepNoRecovery = time.Hour

func newStepTest(rt *rapid.T) *stepTest {
	s := &stepTest{
		capacity:  uint64(rapid.SampledFrom([]int{2, 4}).Draw(rt, "capacity")),
		pos:       map[uint64]stepPos{},
		published: map[string]bool{}, acked: map[string]bool{}, delivered: map[string]bool{}, lost: map[string]bool{},
	}
	s.path = fmt.Sprintf("/dev/shm/mpmc-test-%d-%d-steps", os.Getpid(), pathSeq.Add(1))
	q, err := Create(s.path, Config{Capacity: int(s.capacity), SlotSize: 8})
	if err != nil {
		rt.Fatal(err)
	}
	s.adopt(q)
	for range 2 {
		s.open(rt)
	}
	return s
}

func (s *stepTest) adopt(q *Queue) {
	// Liveness is the model's: a killed handle's lock is in fact still
	// held by this process.
	q.ring.alive = func(i int) (bool, error) { return !s.dead[i].Load(), nil }
	q.SetRecoveryTimeout(stepNoRecovery)
	s.handles = append(s.handles, &stepHandle{q: q, timeout: stepNoRecovery, last: map[int]int{}})
}

func (s *stepTest) open(rt *rapid.T) {
	// Open sweeps the ring, with the kernel's word on liveness: every
	// handle here is alive by it, so the sweep must change nothing, which
	// the next check verifies.
	q, err := Open(s.path)
	if err != nil {
		rt.Fatal(err)
	}
	s.adopt(q)
}

// cleanup closes the live handles, first running to its end, without
// stops, any operation a failure left parked. A killed handle's goroutine
// is parked for ever inside a call, counted in flight: Close would wait for
// it for ever, and unmapping the segment under it would leave it pointing
// at nothing if it ever ran. So the handle is deliberately leaked, with its
// mapping, as a dead process leaves nothing behind to close. Only its file
// descriptor is closed (the mapping does not need it, and its lock matters
// to nobody once the run is over: shrinking runs the test thousands of
// times), the segment's pages are given back (the mapping stays, reading
// zeros) and its file removed.
func (s *stepTest) cleanup() {
	leaked := false
	for _, hd := range s.handles {
		if o := hd.op; o != nil && !hd.dead && o.returned {
			hd.op = nil
		}
		if o := hd.op; o != nil && !hd.dead {
			o.free.Store(true)
			stepRunning.Store(o)
			o.resume <- struct{}{}
			select {
			case <-o.events:
				hd.op = nil
			case <-time.After(5 * time.Second):
			}
		}
		if hd.dead || hd.op != nil {
			leaked = true
			hd.q.seg.f.Close()
			continue
		}
		hd.q.Close()
	}
	if leaked {
		if f, err := os.OpenFile(s.path, os.O_RDWR, 0); err == nil {
			if st, err := f.Stat(); err == nil {
				unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, st.Size())
			}
			f.Close()
		}
	}
	os.Remove(s.path)
}

func (s *stepTest) ring() *ring { return &s.handles[0].q.ring } // any mapping will do

func (s *stepTest) live() []int {
	var l []int
	for i, hd := range s.handles {
		if !hd.dead {
			l = append(l, i)
		}
	}
	return l
}

func (s *stepTest) action(rt *rapid.T) {
	var idle, parked []int
	for _, h := range s.live() {
		if s.handles[h].op == nil {
			idle = append(idle, h)
		} else {
			parked = append(parked, h)
		}
	}
	var acts []string
	if len(parked) > 0 {
		acts = append(acts, "step", "step", "step", "step", "step", "step")
	}
	if len(idle) > 0 {
		acts = append(acts, "start", "start", "start")
	}
	if len(s.live()) > 1 {
		acts = append(acts, "kill")
	}
	if len(s.live()) < 3 && len(s.handles) < 6 {
		acts = append(acts, "open")
	}
	acts = append(acts, "recoverAll", "stall")
	act := rapid.SampledFrom(acts).Draw(rt, "action")
	stepStats[act]++
	switch act {
	case "step":
		s.step(rt, rapid.SampledFrom(parked).Draw(rt, "handle"))
	case "start":
		s.start(rt, rapid.SampledFrom(idle).Draw(rt, "handle"))
	case "kill":
		s.kill(rapid.SampledFrom(s.live()).Draw(rt, "handle"))
	case "open":
		s.open(rt)
	case "recoverAll":
		s.recoverAll(rt, rapid.SampledFrom(s.live()).Draw(rt, "handle"))
	case "stall":
		h := rapid.SampledFrom(s.live()).Draw(rt, "handle")
		s.stall(rt, h, rapid.SampledFrom([]side{producers, consumers}).Draw(rt, "side"))
	}
	s.check(rt)
}

func (s *stepTest) start(rt *rapid.T, h int) {
	hd := s.handles[h]
	o := &stepOp{h: h, kind: stepKind(rapid.IntRange(0, int(opTake)).Draw(rt, "op")),
		resume: make(chan struct{}), events: make(chan stepEvent), at: hookStart}
	switch o.kind {
	case opEnqueue, opReserve:
		o.msgs = []string{s.message(h)}
		o.commit = o.kind == opReserve && rapid.IntRange(0, 3).Draw(rt, "commit (not abort)") > 0
	case opEnqueueBatch:
		for range rapid.IntRange(1, 3).Draw(rt, "n") {
			o.msgs = append(o.msgs, s.message(h))
		}
	case opDequeueBatch:
		o.max = rapid.IntRange(1, 3).Draw(rt, "max")
	default:
		o.max = 1
	}
	o.eager = rapid.IntRange(0, 3).Draw(rt, "eager recovery") == 0
	hd.timeout = stepNoRecovery
	if o.eager {
		hd.timeout = 0
	}
	hd.q.SetRecoveryTimeout(hd.timeout)
	s.launch(rt, o)
}

// launch starts operation o in a goroutine of its own and runs it to its
// first stop.
func (s *stepTest) launch(rt *rapid.T, o *stepOp) {
	s.handles[o.h].op = o
	q := s.handles[o.h].q
	go func() {
		<-o.resume
		ev := o.run(q)
		ev.done = true
		if stepRunning.Swap(nil) != o {
			panic("an operation returned that the scheduler did not run")
		}
		o.events <- ev
	}()
	s.step(rt, o.h)
}

// message is a new message of producer h: "h.seq", at most 8 bytes.
func (s *stepTest) message(h int) string {
	s.seq++
	return fmt.Sprintf("%d.%d", h, s.seq)
}

// step runs handle h's operation to its next stop: applies to the model
// what the protocol steps it is about to take do (as far as they are
// decided already), resumes it, and checks where it stopped.
func (s *stepTest) step(rt *rapid.T, h int) {
	o := s.handles[h].op
	from := o.at
	switch from {
	case hookBeforeClaim:
		s.cas(o)
	case hookEnqueueBeforePublish: // E6
		s.publish(o.claimPos+uint64(o.idx), o.claimMsgs[o.idx])
	case hookDequeueTaken:
		if o.kind == opTake { // skipped positions before the message are released (D5)
			last := o.claimPos + uint64(o.claimN) - 1
			for p := o.claimPos; p < last; p++ {
				s.release(rt, o, p)
			}
			if len(o.got) == 0 { // only skipped positions: it looks again
				s.release(rt, o, last)
			}
		}
	case hookDequeueCopied: // D5
		s.release(rt, o, o.claimPos+uint64(o.idx))
	case hookHeld:
		p := o.claimPos + uint64(o.claimN) - 1
		switch {
		case o.kind == opTake:
			s.release(rt, o, p)
		case o.commit:
			s.publish(p, o.msgs[0])
		default:
			s.pos[p] = stepPos{kind: skipped, owner: -1}
		}
	}

	stepRunning.Store(o)
	o.resume <- struct{}{}
	var ev stepEvent
	select {
	case ev = <-o.events:
	case <-time.After(10 * time.Second):
		rt.Fatalf("handle %d (%v, from hook %d) neither stopped nor returned in 10s", h, o.kind, from)
	}
	o.returned = ev.done
	s.reconcile(rt, o)

	// Where it may stop next.
	var want hookPoint = -2 // none
	over := false           // the claim is finished: it may claim again, or return
	switch from {
	case hookStart:
		over = true
	case hookBeforeClaim:
		if !o.claiming {
			over = true
		} else if o.kind.side() == producers {
			want = hookEnqueueClaimed
		} else {
			want = hookDequeueTaken
		}
	case hookEnqueueClaimed:
		want = hookEnqueueMidCopy
		if o.kind == opReserve {
			want = hookHeld
		}
	case hookEnqueueMidCopy:
		want = hookEnqueueBeforePublish
	case hookEnqueueBeforePublish:
		switch {
		case o.idx == 0:
			want = hookBatchFirstPublished
		case o.idx+1 < o.claimN:
			o.idx++
			want = hookEnqueueMidCopy
		default:
			over = true
		}
	case hookBatchFirstPublished:
		o.idx = 1
		if o.claimN > 1 {
			want = hookEnqueueMidCopy
		} else {
			over = true
		}
	case hookDequeueTaken:
		switch {
		case o.kind != opTake:
			want = hookDequeueCopied
		case len(o.got) > 0:
			want = hookHeld
		default:
			over = true
		}
	case hookDequeueCopied:
		o.idx++
		if o.idx < o.claimN {
			want = hookDequeueCopied
		} else {
			over = true
		}
	case hookHeld:
		over = true
	}
	again := false
	if over {
		o.claiming = false
		if o.kind.side() == producers {
			again = o.assigned < len(o.msgs)
		} else {
			again = len(o.got) == 0
		}
	}
	switch {
	case ev.done:
		stepStats[fmt.Sprintf("%v returned %v", o.kind, ev.err)]++
		if !over {
			rt.Fatalf("handle %d: %v returned %d, %v from hook %d; want hook %d", h, o.kind, ev.n, ev.err, from, want)
		}
		s.done(rt, o, ev)
	case ev.at == hookBeforeClaim:
		if !again {
			rt.Fatalf("handle %d: %v claims again from hook %d", h, o.kind, from)
		}
		stepStats["hook 0 (before claim)"]++
		o.at = hookBeforeClaim
		s.intent(rt, o)
	case ev.at == want:
		stepStats[fmt.Sprintf("hook %d", want)]++
		o.at = want
	default:
		rt.Fatalf("handle %d: %v stopped at hook %d from hook %d; want hook %d (claim over: %v)", h, o.kind, ev.at, from, want, over)
	}
}

// intent checks the claim an operation recorded before its CAS (E1, D1):
// the next positions, as many as the model says the real code saw.
func (s *stepTest) intent(rt *rapid.T, o *stepOp) {
	sd := o.kind.side()
	var pos uint64
	var n int
	if sd == producers {
		pos, n = s.tail, min(len(o.msgs)-o.assigned, int(s.capacity), s.free())
	} else {
		pos, n = s.head, s.readable(o.max)
	}
	if n == 0 {
		rt.Fatalf("handle %d: %v claims %s with nothing to claim: %s", o.h, o.kind, recString(s.claimRecords(o.h)), s.dump())
	}
	recs := s.claimRecords(o.h)
	if want := recordFor(sd, pos, n); len(recs) != 1 || recs[0] != want {
		rt.Fatalf("handle %d: %v records %s before claiming; want %s", o.h, o.kind, recString(recs), recString([]uint64{want}))
	}
	o.intentPos, o.intentN = pos, n
}

// cas is the outcome of the CAS an operation makes when it resumes from
// hookBeforeClaim (E2, D2): it wins if the position has not moved since.
func (s *stepTest) cas(o *stepOp) {
	p, n := o.intentPos, o.intentN
	if o.kind.side() == producers && s.tail != p || o.kind.side() == consumers && s.head != p {
		stepStats["CAS lost"]++
		return
	}
	if o.kind.side() == producers {
		rest := len(o.msgs) - o.assigned
		o.lastShort = n < min(rest, int(s.capacity))
		o.claimMsgs = o.msgs[o.assigned : o.assigned+n]
		for i := range n {
			s.pos[p+uint64(i)] = stepPos{kind: writing, owner: o.h, msg: o.claimMsgs[i]}
		}
		o.assigned += n
		s.tail += uint64(n)
	} else {
		for i := range uint64(n) {
			st := s.pos[p+i]
			s.pos[p+i] = stepPos{kind: reading, owner: o.h, msg: st.msg, skip: st.kind == skipped}
			if st.kind == full {
				o.got = append(o.got, st.msg)
				o.gotPos = append(o.gotPos, p+i)
			}
		}
		s.head += uint64(n)
	}
	o.claiming, o.claimPos, o.claimN, o.idx = true, p, n, 0
}

func (s *stepTest) publish(p uint64, msg string) {
	s.pos[p] = stepPos{kind: full, owner: -1, msg: msg}
	s.published[msg] = true
}

func (s *stepTest) release(rt *rapid.T, o *stepOp, p uint64) {
	if st := s.pos[p]; st.kind != reading || st.owner != o.h {
		rt.Fatalf("model: handle %d releases position %d in state %+v", o.h, p, st)
	}
	s.pos[p] = stepPos{kind: done, owner: -1}
}

// done checks what an operation returned against the model.
func (s *stepTest) done(rt *rapid.T, o *stepOp, ev stepEvent) {
	hd := s.handles[o.h]
	hd.op = nil
	if o.kind.side() == producers {
		n := o.assigned
		if o.kind == opReserve && !o.commit {
			n = 0
		}
		switch {
		case ev.n != n:
			rt.Fatalf("handle %d: %v returned %d, %v; the model gave %d positions", o.h, o.kind, ev.n, ev.err, o.assigned)
		case o.assigned == len(o.msgs):
			if ev.err != nil {
				rt.Fatalf("handle %d: %v returned %d, %v; want no error", o.h, o.kind, ev.n, ev.err)
			}
		case !errors.Is(ev.err, ErrFull) || !o.lastShort && s.free() != 0:
			rt.Fatalf("handle %d: %v returned %d, %v with %d free", o.h, o.kind, ev.n, ev.err, s.free())
		}
		for _, m := range o.msgs[:ev.n] {
			s.acked[m] = true
		}
		return
	}
	if len(o.got) == 0 {
		if !errors.Is(ev.err, ErrEmpty) || ev.n != 0 || s.readable(o.max) != 0 {
			rt.Fatalf("handle %d: %v returned %d, %v with %d positions to take", o.h, o.kind, ev.n, ev.err, s.readable(o.max))
		}
		return
	}
	if ev.err != nil || !slices.Equal(ev.out, o.got) {
		rt.Fatalf("handle %d: %v returned %q, %v; the model says %q", o.h, o.kind, ev.out, ev.err, o.got)
	}
	if o.kind == opTake && ev.id != o.gotPos[0] {
		rt.Fatalf("handle %d: Taken.ID = %d, want %d", o.h, ev.id, o.gotPos[0])
	}
	for _, m := range o.got {
		if s.delivered[m] || s.lost[m] || !s.published[m] {
			rt.Fatalf("handle %d delivered %q: delivered before %v, lost %v, published %v", o.h, m, s.delivered[m], s.lost[m], s.published[m])
		}
		s.delivered[m] = true
		prod, _ := strconv.Atoi(m[:strings.IndexByte(m, '.')])
		seq, _ := strconv.Atoi(m[strings.IndexByte(m, '.')+1:])
		if last, ok := hd.last[prod]; ok && last >= seq {
			rt.Fatalf("handle %d got %q after message %d of the same producer", o.h, m, last)
		}
		hd.last[prod] = seq
	}
}

// kill stops handle h for ever at its current step, a process killed
// there: its claims stay recorded, to be recovered.
func (s *stepTest) kill(h int) {
	hd := s.handles[h]
	hd.dead = true
	s.dead[hd.q.self].Store(true)
	if hd.op != nil {
		for _, m := range hd.op.got {
			s.lost[m] = true // taken, never returned
		}
	}
}

// liveCovered reports whether a live handle's record covers position p of
// side sd while it belongs to a dead one: the record a claimant makes
// before its CAS (it is parked at hookBeforeClaim) names positions another
// may have won since. Recovery must leave p alone until it is gone.
func (s *stepTest) liveCovered(sd side, p uint64, except int) bool {
	for i, hd := range s.handles {
		o := hd.op
		if i != except && !hd.dead && o != nil && o.at == hookBeforeClaim && o.kind.side() == sd &&
			p >= o.intentPos && p < o.intentPos+uint64(o.intentN) {
			return true
		}
	}
	return false
}

// recoverable reports whether position p is a dead handle's claim that a
// recovery may take over now, and of which side.
func (s *stepTest) recoverable(p uint64, except int) (side, bool) {
	st := s.pos[p]
	if st.owner < 0 || !s.handles[st.owner].dead {
		return 0, false
	}
	sd := producers
	if st.kind == reading {
		sd = consumers
	}
	return sd, !s.liveCovered(sd, p, except)
}

// recovered is the model's R1 or R2 of position p.
func (s *stepTest) recovered(p uint64) {
	st := s.pos[p]
	if st.kind == writing {
		s.pos[p] = stepPos{kind: skipped, owner: -1}
		s.recoveredWrites++
		return
	}
	s.pos[p] = stepPos{kind: done, owner: -1}
	if !st.skip {
		s.recoveredReads++
	}
}

// reconcile takes into the model the recoveries an eager operation's stall
// checks made in the step it just took. Any other change of a dead
// handle's claim is left for check to report. (This test found that the
// producers' claim of position 0 while its slot word is 0, the zero value
// of a claim, was taken for "none seen" by the stall check and recovered
// at once, whatever the recovery timeout: stall.seen fixes it, and no
// operation that is not eager may recover anything.)
func (s *stepTest) reconcile(rt *rapid.T, o *stepOp) {
	r := s.ring()
	for p := s.head - min(s.head, s.capacity); p < s.tail; p++ {
		st := s.pos[p]
		if st.owner < 0 || !s.handles[st.owner].dead {
			continue
		}
		if !o.eager {
			continue
		}
		w := r.slot(p).seq.Load()
		if !(st.kind == writing && w == seqWord(p+1, slotSkipped) || st.kind == reading && w == seqWord(p+s.capacity, 0)) {
			continue
		}
		if _, ok := s.recoverable(p, o.h); !ok {
			rt.Fatalf("handle %d: %v recovered position %d, covered by a live handle's record", o.h, o.kind, p)
		}
		s.recovered(p)
		stepStats["recovered by an operation"]++
	}
}

// recoverAll: handle h sweeps the ring, as Open does; every dead claim
// that no live record covers must be recovered.
func (s *stepTest) recoverAll(rt *rapid.T, h int) {
	s.handles[h].q.recoverAll()
	for p := s.head - min(s.head, s.capacity); p < s.tail; p++ {
		if _, ok := s.recoverable(p, -1); ok {
			s.recovered(p)
			stepStats["recovered by recoverAll"]++
		} else if st := s.pos[p]; st.owner >= 0 && s.handles[st.owner].dead {
			stepStats["dead claim covered by a live record"]++
		}
	}
}

// stall: handle h, its side sd held up, makes the stall check its
// operations make, with a zero timeout: the claim in the way must be
// recovered if and only if it is a dead handle's that no live record
// covers.
func (s *stepTest) stall(rt *rapid.T, h int, sd side) {
	hd := s.handles[h]
	var p uint64
	held := false
	if sd == consumers {
		p = s.head
		held = s.head < s.tail && s.pos[p].kind == writing
	} else if s.tail >= s.capacity {
		p = s.tail - s.capacity
		k := s.pos[p].kind
		held = k == writing || k == reading
	}
	want := false
	if held {
		_, want = s.recoverable(p, -1)
	}
	hd.q.SetRecoveryTimeout(0)
	rec := hd.q.takeRecord()
	// The first check of a claim only notes it (unless this side noted
	// the same claim before); the second one acts.
	got := hd.q.checkStall(sd, rec) || hd.q.checkStall(sd, rec)
	rec.Store(0)
	hd.q.SetRecoveryTimeout(hd.timeout)
	if got != want {
		rt.Fatalf("handle %d: stall check of the %v recovered: %v; the model says %v (held up by position %d: %v)", h, sd, got, want, p, held)
	}
	if want {
		s.recovered(p)
		stepStats["recovered by a stall check"]++
	}
}

// finish: nobody else dies, every live operation runs to its end, a sweep
// recovers what the dead left, and a drain yields exactly the model's
// messages.
func (s *stepTest) finish(rt *rapid.T) {
	for range 10000 {
		var parked []int
		for _, h := range s.live() {
			if s.handles[h].op != nil {
				parked = append(parked, h)
			}
		}
		if len(parked) == 0 {
			break
		}
		for _, h := range parked {
			if s.handles[h].op != nil {
				s.step(rt, h)
				s.check(rt)
			}
		}
	}
	h := s.live()[0]
	s.recoverAll(rt, h)
	s.check(rt)
	for range 10000 {
		o := &stepOp{h: h, kind: opDequeueBatch, max: int(s.capacity),
			resume: make(chan struct{}), events: make(chan stepEvent), at: hookStart}
		s.launch(rt, o)
		s.check(rt)
		for s.handles[h].op != nil {
			s.step(rt, h)
			s.check(rt)
		}
		if len(o.got) == 0 {
			break
		}
	}
	stepStats["messages delivered"] += len(s.delivered)
	stepStats["messages lost with a dead consumer"] += len(s.lost)
	if s.head != s.tail {
		rt.Fatalf("drained with positions %d to %d left", s.head, s.tail)
	}
	for m := range s.published {
		if !s.delivered[m] && !s.lost[m] {
			rt.Fatalf("message %q published and never delivered", m)
		}
	}
	for m := range s.acked {
		if !s.published[m] {
			rt.Fatalf("message %q acknowledged and never published", m)
		}
	}
}

// free is how many consecutive positions from the tail have a free slot.
func (s *stepTest) free() int {
	return freeSlots(s.tail, s.capacity, func(p uint64) posKind { return s.pos[p].kind })
}

// readable is how many positions a claim of up to max messages takes at
// the head: skipped ones and messages, up to the first that is not
// published.
func (s *stepTest) readable(max int) int {
	m, k := 0, 0
	for p := s.head; p < s.tail && k < max; p++ {
		switch s.pos[p].kind {
		case full:
			k++
		case skipped:
		default:
			return m
		}
		m++
	}
	return m
}

func (s *stepTest) length() int {
	return queued(s.head, s.tail, func(p uint64) posKind { return s.pos[p].kind })
}

// slotWord is what slot i's sequence word must be: set by the state of the
// latest position claimed in it, if any.
func (s *stepTest) slotWord(i uint64) uint64 {
	if s.tail <= i {
		return seqWord(i, 0)
	}
	p := i + (s.tail-1-i)/s.capacity*s.capacity
	st := s.pos[p]
	switch st.kind {
	case writing:
		return seqWord(p, 0)
	case full:
		return seqWord(p+1, 0)
	case skipped:
		return seqWord(p+1, slotSkipped)
	case reading:
		if st.skip {
			return seqWord(p+1, slotSkipped)
		}
		return seqWord(p+1, 0)
	}
	return seqWord(p+s.capacity, 0)
}

// claimRecords returns the records of handle h that name a claim.
func (s *stepTest) claimRecords(h int) []uint64 {
	q := s.handles[h].q
	var recs []uint64
	for k := range recordsPerEntry {
		if r := q.ring.record(q.self, k).Load(); r&recClaim != 0 {
			recs = append(recs, r)
		}
	}
	return recs
}

func recString(recs []uint64) string {
	var b strings.Builder
	b.WriteString("[")
	for i, r := range recs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%v@%d+%d", side(r>>recSideShift&1), r&recPosMask, r>>recCountShift&(1<<recCountBits-1)+1)
	}
	b.WriteString("]")
	return b.String()
}

// dump shows the ring and the model, for failure messages.
func (s *stepTest) dump() string {
	r := s.ring()
	var b strings.Builder
	fmt.Fprintf(&b, "positions %d, %d (model %d, %d); slots", r.pos[producers].Load(), r.pos[consumers].Load(), s.tail, s.head)
	for i := range s.capacity {
		w := r.slot(i).seq.Load()
		fmt.Fprintf(&b, " %d|%d", w>>seqShift, w&slotFlagMask)
	}
	b.WriteString("; model")
	for p := s.head - min(s.head, s.capacity); p < s.tail; p++ {
		fmt.Fprintf(&b, " %d:%+v", p, s.pos[p])
	}
	st := r.stats()
	fmt.Fprintf(&b, "; recovered %d, %d", st.RecoveredWrites, st.RecoveredReads)
	return b.String()
}

// check compares the ring with the model.
func (s *stepTest) check(rt *rapid.T) {
	r := s.ring()
	if e, d := r.pos[producers].Load(), r.pos[consumers].Load(); e != s.tail || d != s.head {
		rt.Fatalf("positions %#x, %#x; the model says %d, %d", e, d, s.tail, s.head)
	}
	for i := range s.capacity {
		if got, want := r.slot(i).seq.Load(), s.slotWord(i); got != want {
			rt.Fatalf("slot %d: sequence word %d|%d, the model says %d|%d (positions %d to %d)",
				i, got>>seqShift, got&slotFlagMask, want>>seqShift, want&slotFlagMask, s.head, s.tail)
		}
	}
	for h, hd := range s.handles {
		if hd.dead {
			continue
		}
		recs := s.claimRecords(h)
		var want []uint64
		o := hd.op
		switch {
		case o == nil:
			inUse := 0
			for k := range recordsPerEntry {
				if hd.q.ring.record(hd.q.self, k).Load() != 0 {
					inUse++
				}
			}
			if inUse != 0 {
				rt.Fatalf("handle %d is idle with %d records in use", h, inUse)
			}
		case o.at == hookBeforeClaim:
			want = []uint64{recordFor(o.kind.side(), o.intentPos, o.intentN)}
		case o.kind == opTake && o.at == hookHeld:
			want = []uint64{recordFor(consumers, o.claimPos+uint64(o.claimN)-1, 1)}
		case o.claiming:
			want = []uint64{recordFor(o.kind.side(), o.claimPos, o.claimN)}
		}
		if !slices.Equal(recs, want) {
			what := "idle"
			if o != nil {
				what = fmt.Sprintf("%v at hook %d", o.kind, o.at)
			}
			rt.Fatalf("handle %d (%s) records claims %s; the model says %s", h, what, recString(recs), recString(want))
		}
	}
	q := s.handles[s.live()[0]].q
	if got, want := q.Len(), s.length(); got != want {
		rt.Fatalf("Len = %d, the model says %d", got, want)
	}
	if st := q.Stats(); st.RecoveredWrites != s.recoveredWrites || st.RecoveredReads != s.recoveredReads {
		rt.Fatalf("recovered writes, reads = %d, %d; the model says %d, %d", st.RecoveredWrites, st.RecoveredReads, s.recoveredWrites, s.recoveredReads)
	}
}
