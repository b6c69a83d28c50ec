package mpmc

import (
	"errors"
	"fmt"
)

// joinSysVFD joins a System V segment handed over with Send (sysv.go).
func joinSysVFD(shmid, lockFD int) (*segment, error) {
	return nil, fmt.Errorf("mpmc: receive: System V segments: %w", errors.ErrUnsupported)
}

func sysvName(seg *segment) string { return "" }
