package harness

// The segment of a run: created fresh, removed at the end.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/shmq/mpmc"
)

// CreateFresh creates the queue segment of a run (`stress run` or `stress
// chaos`, named by cmd): at path, or, if path is empty, at a unique name
// under /dev/shm starting with prefix. It refuses a path that exists, and
// says why in words fit for an ERROR line. A signal already received on
// sigs stops it before anything is created.
func CreateFresh(cmd, prefix, path string, cfg mpmc.Config, sigs <-chan os.Signal) (*mpmc.Queue, string, error) {
	if path == "" {
		var b [4]byte
		rand.Read(b[:])
		path = fmt.Sprintf("/dev/shm/%s%d-%s", prefix, os.Getpid(), hex.EncodeToString(b[:]))
	} else if _, err := os.Lstat(path); err == nil {
		if _, ierr := mpmc.Inspect(path); ierr != nil {
			return nil, path, fmt.Errorf("-path %s exists and is not a usable queue (%v); %s needs a path that does not exist", path, ierr, cmd)
		}
		return nil, path, fmt.Errorf("-path %s is an existing queue segment; %s creates a fresh one: remove it or pick another path", path, cmd)
	}
	select {
	case s := <-sigs:
		return nil, path, fmt.Errorf("interrupted by %v before the run started", s)
	default:
	}
	q, err := mpmc.Create(path, cfg)
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return nil, path, fmt.Errorf("no room in %s for the segment (capacity %d x slot %d bytes): %v", filepath.Dir(path), cfg.Capacity, cfg.SlotSize, err)
	case errors.Is(err, fs.ErrExist):
		return nil, path, fmt.Errorf("-path %s appeared while creating it: %v", path, err)
	case err != nil:
		return nil, path, fmt.Errorf("cannot create the queue: %v", err)
	}
	return q, path, nil
}

// RemoveCreated removes a segment the run created, and returns a note for
// the report if it could not.
func RemoveCreated(path string) (removed bool, note string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Sprintf("could not remove %s: %v", path, err)
	}
	return true, ""
}

// Diagnosis describes the queue at path in one line, for a timeout's FAIL
// line: positions, sleepers and claims held.
func Diagnosis(path string) string {
	info, err := InspectPath(path)
	if err != nil {
		return fmt.Sprintf("inspect failed: %v", err)
	}
	s := info.Stats
	claims := 0
	for _, p := range info.Participants {
		claims += p.Claims
	}
	return fmt.Sprintf("queue len %d, enqueue pos %d, dequeue pos %d, shutdown %v, sleeping consumers %v, sleeping producers %v, claims held %d",
		s.Len, s.EnqueuePos, s.DequeuePos, s.Shutdown, info.SleepingConsumers, info.SleepingProducers, claims)
}
