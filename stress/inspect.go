package main

// `stress inspect`: ipcs for queue segments.

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
)

// inspectReport is a segment's description; under -json, the fields of
// mpmc.Info at the top level, with the verdict.
type inspectReport struct {
	harness.Verdict
	mpmc.Info
}

func inspectCmd(args []string, stdout, stderr io.Writer) int {
	b := newByHand("inspect", "queue segment to inspect", stdout)
	path, out := b.path, &b.out
	if code := b.parse(args, stderr); code >= 0 {
		return code
	}
	info, err := harness.InspectPath(*path) // also /proc/PID/fd/N (memfd) and sysv:0xKEY
	if err != nil {
		return queueError(out, "inspect", *path, err)
	}
	if !out.json {
		writeInfo(stdout, info)
	}
	rep := &inspectReport{Info: info}
	rep.OK("%s is a queue segment, version %d.%d", *path, info.VersionMajor, info.VersionMinor)
	return out.end(rep)
}

// writeInfo prints a segment's description.
func writeInfo(w io.Writer, info mpmc.Info) {
	s := info.Stats
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(w, "segment:      %s\n", info.Path)
	fmt.Fprintf(w, "version:      %d.%d\n", info.VersionMajor, info.VersionMinor)
	fmt.Fprintf(w, "geometry:     capacity %d slots x %d bytes (stride %d), file %d bytes\n", info.Capacity, info.SlotSize, info.SlotStride, info.FileSize)
	fmt.Fprintf(w, "created:      %s by pid %d\n", info.Created.Format(time.RFC3339), info.CreatorPid)
	fmt.Fprintf(w, "positions:    enqueue %d, dequeue %d, length %d, shut down: %s\n", s.EnqueuePos, s.DequeuePos, s.Len, yes(s.Shutdown))
	fmt.Fprintf(w, "waiters:      consumers sleeping %v, producers sleeping %v (participant indexes)\n", orNone(info.SleepingConsumers), orNone(info.SleepingProducers))
	fmt.Fprintf(w, "counters:     consumer sleeps %d, consumer wake calls %d, producer sleeps %d, producer wake calls %d\n", s.ConsumerSleeps, s.ConsumerWakeups, s.ProducerSleeps, s.ProducerWakeups)
	fmt.Fprintf(w, "recovery:     writes %d, reads %d, redelivered %d, skipped slots %d, participants reclaimed %d\n", s.RecoveredWrites, s.RecoveredReads, s.Redelivered, s.SkippedSlots, s.ParticipantsReclaimed)
	dead, deadClaims := 0, 0
	for _, p := range info.Participants {
		if !p.Alive {
			dead++
			deadClaims += p.Claims
		}
	}
	if dead > 0 {
		fmt.Fprintf(w, "participants: %d (%d dead without leaving, holding %d claims)\n", len(info.Participants), dead, deadClaims)
	} else {
		fmt.Fprintf(w, "participants: %d\n", len(info.Participants))
	}
	if len(info.Participants) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  INDEX\tPID\tALIVE\tCLAIMS\tGEN\tJOINED")
	for _, p := range info.Participants {
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%d\t%d\t%s\n", p.Index, p.Pid, yes(p.Alive), p.Claims, p.Generation, p.Joined.Format(time.RFC3339))
	}
	tw.Flush()
}

func orNone(ids []int) string {
	if len(ids) == 0 {
		return "none"
	}
	return fmt.Sprint(ids)
}
