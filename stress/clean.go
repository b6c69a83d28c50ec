package main

// `stress clean`: remove the queue segments that no live process uses.

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/shmq/mpmc"
)

func cleanCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clean", flag.ContinueOnError)
	dir := fs.String("dir", "/dev/shm", "directory whose unused queue segments are removed")
	dry := fs.Bool("n", false, "only list the segments that would be removed: those without a live participant")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *dry {
		unused, err := unusedSegments(*dir)
		if err != nil {
			fmt.Fprintf(stdout, "ERROR: clean: %v\n", err)
			return exitError
		}
		for _, u := range unused {
			fmt.Fprintf(stdout, "would remove %s\n", u)
		}
		fmt.Fprintf(stdout, "OK: %d unused queue segments in %s (nothing removed: -n)\n", len(unused), *dir)
		return exitOK
	}
	removed, err := mpmc.Clean(*dir)
	for _, p := range removed {
		fmt.Fprintf(stdout, "removed %s\n", p)
	}
	if err != nil {
		fmt.Fprintf(stdout, "ERROR: clean: %v (after removing %d)\n", err, len(removed))
		return exitError
	}
	fmt.Fprintf(stdout, "OK: removed %d unused queue segments from %s\n", len(removed), *dir)
	return exitOK
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
