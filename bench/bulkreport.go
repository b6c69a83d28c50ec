package main

// The bulk calls' ratios and report tables: batches of 32 against a
// buffered channel (in one process) and against mpmc's single-message calls
// (across processes), zero-copy against copying.

import "fmt"

// ratioBatchInproc names the ratio of mpmc's batch rate over chan's, in one
// process.
func ratioBatchInproc(p, c int) string {
	return fmt.Sprintf("in-process %dx%d: mpmc batches of 32 msgs/s over %s", p, c, mechChan)
}

// ratioBatchProc names the ratio of mpmc's batch rate over its
// single-message rate, across processes (64 B).
func ratioBatchProc(p, c int) string {
	return fmt.Sprintf("across processes 64 B %dx%d: mpmc batches of 32 msgs/s over single-message calls", p, c)
}

// ratioZeroCopy names the ratio of the zero-copy rate over the copying
// rate, across processes, 1x1, messages of size bytes.
func ratioZeroCopy(size int) string {
	return fmt.Sprintf("across processes %d B 1x1: mpmc zero-copy msgs/s over copy", size)
}

// bulkRatios are the ratios of the bulk cases, each paired by repetition.
func bulkRatios(s samples) []Ratio {
	var rs []Ratio
	for _, sh := range inprocShapes {
		ns := func(m string) []float64 { return s["inproc/"+inprocCase{m, sh[0], sh[1]}.key()] }
		rs = append(rs, newRatio(ratioBatchInproc(sh[0], sh[1]), ns(mechChan), ns(mechQueueBatch)))
	}
	for _, sh := range tputShapes {
		rate := func(m string) []float64 { return s["tput/"+tputKey(m, 64, sh[0], sh[1])] }
		rs = append(rs, newRatio(ratioBatchProc(sh[0], sh[1]), rate(mechQueueBatch), rate(mechQueue)))
	}
	for _, size := range zcSizes {
		rate := func(m string) []float64 { return s["tput/"+tputKey(m, size, 1, 1)] }
		rs = append(rs, newRatio(ratioZeroCopy(size), rate(mechZeroCopy), rate(mechCopy)))
	}
	return rs
}

func (r *Results) batchTable() table {
	t := table{Head: []string{"where", "shape", "mpmc batches of 32 msgs/s", "compared with", "its msgs/s", "batches over it"}}
	row := func(where string, p, c int, batch, other float64, with, ratio string) {
		t.add(where, fmt.Sprintf("%dP/%dC", p, c), fmtRate(batch), with, fmtRate(other), fmtX(r.ratioOf(ratio)))
	}
	for _, sh := range inprocShapes {
		ns := func(m string) float64 { return seriesMedian(r.inproc(m, sh[0], sh[1]).NsPerMsg) }
		row("one process (goroutines)", sh[0], sh[1], 1e9/ns(mechQueueBatch), 1e9/ns(mechChan), "buffered channel, one value per send", ratioBatchInproc(sh[0], sh[1]))
	}
	for _, sh := range tputShapes {
		rate := func(m string) float64 { return seriesMedian(r.tput(m, 64, sh[0], sh[1])) }
		row("across processes", sh[0], sh[1], rate(mechQueueBatch), rate(mechQueue), "mpmc Enqueue/Dequeue, one message per call", ratioBatchProc(sh[0], sh[1]))
	}
	return t
}

func (r *Results) zeroCopyTable() table {
	t := table{Head: []string{"slot = message", "copy msgs/s", "copy GB/s", "zero-copy msgs/s", "zero-copy GB/s", "zero-copy over copy"}}
	for _, size := range zcSizes {
		c, z := seriesMedian(r.tput(mechCopy, size, 1, 1)), seriesMedian(r.tput(mechZeroCopy, size, 1, 1))
		t.add(fmtSize(size), fmtRate(c), fmtG(gbps(c, size)), fmtRate(z), fmtG(gbps(z, size)), fmtX(r.ratioOf(ratioZeroCopy(size))))
	}
	return t
}
