package main

// `stress clean`: remove the queue segments that no live process uses.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/harness"
)

// cleanReport is what `stress clean` removed, or with -n would remove.
type cleanReport struct {
	harness.Verdict
	Dir         string   `json:"dir"`
	Removed     []string `json:"removed"`
	WouldRemove []string `json:"would_remove,omitempty"` // -n: each with its creator and dead participants
}

func cleanCmd(args []string, stdout, stderr io.Writer) int {
	b := newByHand("clean", "", stdout)
	fs, out := b.fs, &b.out
	dir := fs.String("dir", "/dev/shm", "directory whose unused queue segments are removed")
	dry := fs.Bool("n", false, "only list the segments that would be removed: those without a live participant")
	if code := b.parse(args, stderr); code >= 0 {
		return code
	}
	rep := &cleanReport{Dir: *dir, Removed: []string{}}
	if *dry {
		unused, err := unusedSegments(*dir)
		if err != nil {
			return out.error(harness.CauseQueue, "clean: %v", err)
		}
		rep.WouldRemove = unused
		for _, u := range unused {
			out.say("would remove %s", u)
		}
		rep.OK("%d unused queue segments in %s (nothing removed: -n)", len(unused), *dir)
		return out.end(rep)
	}
	removed, err := mpmc.Clean(*dir)
	rep.Removed = append(rep.Removed, removed...)
	for _, p := range removed {
		out.say("removed %s", p)
	}
	if err != nil {
		rep.Error(harness.CauseQueue, "clean: %v (after removing %d)", err, len(removed))
	} else {
		rep.OK("removed %d unused queue segments from %s", len(removed), *dir)
	}
	return out.end(rep)
}

// unusedSegments lists the queue segments of dir whose participants are all
// dead (or that have none), described for people, as mpmc.Clean would judge
// them. Files that are not queue segments are not listed, nor are the
// half-built files of creators (which Clean also removes once their creator
// is dead).
func unusedSegments(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		info, err := mpmc.Inspect(p)
		if err != nil {
			continue // not a queue, not ours to read, or still being built
		}
		dead, claims := 0, 0
		alive := false
		for _, pt := range info.Participants {
			if pt.Alive {
				alive = true
				break
			}
			dead++
			claims += pt.Claims
		}
		if alive {
			continue
		}
		out = append(out, fmt.Sprintf("%s (created by pid %d; %d dead participants holding %d claims)", p, info.CreatorPid, dead, claims))
	}
	sort.Strings(out)
	return out, nil
}
