package main

// The benchmark cases: what one repetition measures, in display order. A
// new mechanism is a row here plus its code (an in-process loop in
// inproc.go, an end in transport.go); the report and the ratios pick the
// rows up by name.

// inprocCases are the in-process throughput cases (goroutines of one
// process).
var inprocCases = []inprocCase{
	{mechQueue, 1, 1}, {mechChan, 1, 1}, {mechCondRing, 1, 1}, {mechWorkiva, 1, 1},
	{mechQueue, 4, 4}, {mechChan, 4, 4}, {mechCondRing, 4, 4}, {mechWorkiva, 4, 4},
	// mpmc's Try calls and the reference, both spinning, one pair only
	// (spinning goroutines beyond the core count measure the scheduler).
	{mechQueueSpin, 1, 1}, {mechRef, 1, 1},
	// Batches of 32 (EnqueueBatch/DequeueBatch, 64 B), each goroutine with
	// a handle of its own; compared with chan in the same repetition.
	{mechQueueBatch, 1, 1}, {mechQueueBatch, 4, 4},
}

// floorMechs are the single-goroutine pair cases.
var floorMechs = []string{mechQueue, mechRef}

// tputCases returns the cross-process throughput cases over mechs (the
// alternatives available on this machine).
func tputCases(mechs []string) []tputCase {
	var cs []tputCase
	for _, size := range tputSizes {
		for _, sh := range tputShapes {
			for _, m := range mechs {
				cs = append(cs, tputCase{Mech: m, Size: size, P: sh[0], C: sh[1]})
			}
		}
	}
	// Spinning, against the reference: 64 B, one producer, one consumer.
	cs = append(cs, tputCase{Mech: mechQueueSpin, Size: 64, P: 1, C: 1}, tputCase{Mech: mechRef, Size: 64, P: 1, C: 1})
	// Batches of 32, 64 B, against mpmc's single-message calls.
	for _, sh := range tputShapes {
		cs = append(cs, tputCase{Mech: mechQueueBatch, Size: 64, P: sh[0], C: sh[1]})
	}
	// Zero-copy against copying, 1P/1C, messages that fill their slot.
	for _, size := range zcSizes {
		cs = append(cs, tputCase{Mech: mechCopy, Size: size, P: 1, C: 1}, tputCase{Mech: mechZeroCopy, Size: size, P: 1, C: 1})
	}
	return cs
}

// Shapes and sizes of the cross-process throughput runs.
var (
	inprocShapes = [][2]int{{1, 1}, {4, 4}}
	tputShapes   = [][2]int{{1, 1}, {4, 4}}
	tputSizes    = []int{64, 1024}
)

// pingCases are the ping-pong configurations, in display order.
var pingCases = []ppCase{
	{Name: "mpmc default, peer active", Mech: mechQueue},
	{Name: "mpmc default, both asleep", Mech: mechQueue, Asleep: true},
	{Name: "mpmc spin only", Mech: mechQueue, SetSpin: true, Spin: -1},
	{Name: "mpmc sleep at once", Mech: mechQueue, SetSpin: true, Spin: 0},
	{Name: "raw futex", Mech: mechFutex},
	{Name: "raw futex, both asleep", Mech: mechFutex, Asleep: true},
	{Name: "pipe", Mech: mechPipe},
	{Name: "unix seqpacket", Mech: mechUnixSock},
	eventfdPingCases[0], eventfdPingCases[1], // eventfd.go
}

// shmipcMechs are the shmipc-go configurations; each is measured streaming
// and in ping-pong.
var shmipcMechs = []string{mechShmipcTuned, mechShmipcDefault}

// pendingCase is a measurement waiting for a library API. Its targets are
// listed in the report as pending; it must not call the API before the
// library has it (the harness builds against the current library).
type pendingCase struct {
	Name  string
	API   string
	Limit float64 // the goal, at least this many times (0: to be set)
}

// pendingCases are the measurements to add once their APIs land: none now
// (the batch and zero-copy calls have landed; their cases are above).
var pendingCases = []pendingCase{}
