package harness

// The life of a run's segment and children, from setup to cleanup.

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shmq/mpmc"
	"github.com/shmq/mpmc/stress/internal/proc"
)

// ReadyTimeout bounds how long children may take to start and open the
// queue.
const ReadyTimeout = 30 * time.Second

// ReapTimeout bounds the wait for killed children to be reaped.
const ReapTimeout = 10 * time.Second

// Session is one run's segment, children and the events that end it early.
// It records into the Base of the run's report: the segment's path and
// whether it was removed, notes, and verdicts reached while the run goes
// on.
type Session struct {
	// Sigs receives SIGINT and SIGTERM from NewSession on. It is never
	// stopped: a signal that arrives after the run, while the report is
	// printed, is ignored rather than killing the process half-way.
	Sigs chan os.Signal
	// Q is the parent's handle of the segment at Path, once created.
	Q    *mpmc.Queue
	Path string
	// Exits receives every child once it has exited.
	Exits chan *proc.Child
	// Children are all the children started, in order.
	Children []*proc.Child

	rep     *Base
	created bool
	backing string   // BackingFile, BackingMemfd or BackingSysV
	keep    *os.File // memfd: the descriptor Path names (/proc/PID/fd/N)
	exe     string
	env     []string

	Interrupted      os.Signal // the first signal, if any
	InterruptedTwice bool
	Aborted          bool
	TimedOut         bool
	stuck            []string
	diagnosis        string
}

// NewSession starts listening for SIGINT and SIGTERM; exits is the
// capacity of Exits (children that may exit before they are received).
func NewSession(rep *Base, exits int) *Session {
	s := &Session{Sigs: make(chan os.Signal, 4), Exits: make(chan *proc.Child, exits), rep: rep}
	signal.Notify(s.Sigs, syscall.SIGINT, syscall.SIGTERM)
	return s
}

// Create creates the run's fresh segment (see CreateFresh) and finds the
// binary to re-execute as children.
func (s *Session) Create(cmd, prefix, path string, cfg mpmc.Config) error {
	return s.CreateBacking(cmd, prefix, path, BackingFile, cfg)
}

// CreateBacking is Create in backing b (backing.go); path applies to file.
func (s *Session) CreateBacking(cmd, prefix, path, b string, cfg mpmc.Config) error {
	var q *mpmc.Queue
	var err error
	s.backing = b
	if b == BackingFile {
		q, path, err = CreateFresh(cmd, prefix, path, cfg, s.Sigs)
	} else {
		q, path, s.keep, err = createBacking(b, cfg)
	}
	s.Path = path
	if err != nil {
		return err
	}
	s.Q, s.created = q, true
	s.rep.Path = path
	if s.exe, err = os.Executable(); err != nil {
		return fmt.Errorf("cannot find the stress binary to re-execute: %v", err)
	}
	s.env = os.Environ()
	return nil
}

// Cleanup closes the handle and removes the segment, only if this run
// created it.
func (s *Session) Cleanup() {
	if s.Q != nil {
		s.Q.Close()
	}
	if s.keep != nil {
		s.keep.Close()
	}
	if s.created && s.backing == BackingMemfd {
		s.rep.Removed = true // gone with its last descriptor
	} else if key, ok := sysvKey(s.Path); ok && s.created {
		if err := mpmc.RemoveSysV(key); err != nil {
			s.rep.Notes = append(s.rep.Notes, err.Error())
		} else {
			s.rep.Removed = true
		}
	} else if s.created {
		var note string
		if s.rep.Removed, note = RemoveCreated(s.Path); note != "" {
			s.rep.Notes = append(s.rep.Notes, note)
		}
	}
}

// Start starts a child of role with id, args and extra descriptors; it
// reports to Exits when it exits.
func (s *Session) Start(role proc.Role, id int, args []string, extra ...*os.File) (*proc.Child, error) {
	var conn *net.UnixConn
	if s.backing == BackingMemfd {
		// The child receives the queue over a socket: its end is the
		// last extra descriptor, and its -path says which (the last
		// -path given wins).
		var end *os.File
		var err error
		if conn, end, err = handOver(); err != nil {
			return nil, fmt.Errorf("socket for %v %d: %v", role, id, err)
		}
		defer conn.Close()
		defer end.Close()
		extra = append(extra, end)
		args = append(append([]string(nil), args...), "-path", fmt.Sprintf("unix:%d", 2+len(extra)))
	}
	c, err := proc.Start(proc.Spec{Exe: s.exe, Role: role, ID: id, Args: args, Env: s.env, Extra: extra, Exits: s.Exits})
	if err != nil {
		return nil, err
	}
	if conn != nil {
		if err := s.Q.Send(conn); err != nil {
			c.Kill()
			return nil, fmt.Errorf("send the queue to %v %d: %v", role, id, err)
		}
	}
	s.Children = append(s.Children, c)
	return c, nil
}

// WaitReady waits until the children are ready, within timeout (at most
// ReadyTimeout).
func (s *Session) WaitReady(children []*proc.Child, timeout time.Duration) error {
	return proc.WaitReady(children, min(ReadyTimeout, timeout))
}

// SignalGo tells the children to go, and returns those it reached: a child
// that died meanwhile is left to the supervision to report.
func (s *Session) SignalGo(children []*proc.Child) []*proc.Child {
	var reached []*proc.Child
	for _, c := range children {
		if c.SignalGo() == nil {
			reached = append(reached, c)
		}
	}
	return reached
}

// Abort kills every child still running.
func (s *Session) Abort() {
	s.Aborted = true
	for _, c := range s.Children {
		c.Kill()
	}
}

// Signal handles SIGINT or SIGTERM: the first one returns true (the caller
// ends the run the gentle way), a second kills everything.
func (s *Session) Signal(sig os.Signal) (first bool) {
	if s.Interrupted == nil {
		s.Interrupted = sig
		return true
	}
	s.InterruptedTwice = true
	s.Abort()
	return false
}

// TimeOut records who is still running and the queue's state (after the
// words why, if any), and kills everything.
func (s *Session) TimeOut(why string) {
	s.TimedOut = true
	s.diagnosis = Diagnosis(s.Path)
	if why != "" {
		s.diagnosis = why + ": " + s.diagnosis
	}
	for _, c := range s.Children {
		if c.Running() {
			s.stuck = append(s.stuck, c.String())
		}
	}
	s.Abort()
}

// Reap waits, boundedly, for every child to be reaped.
func (s *Session) Reap() {
	deadline := time.After(ReapTimeout)
	for _, c := range s.Children {
		select {
		case <-c.Done():
		case <-deadline:
			s.rep.Notes = append(s.rep.Notes, fmt.Sprintf("%v could not be reaped within %v", c, ReapTimeout))
			return
		}
	}
}

// Collect adds every child to the report, and the first signal.
func (s *Session) Collect() {
	for _, c := range s.Children {
		s.rep.AddChild(c)
	}
	if s.Interrupted != nil {
		s.rep.Interrupted = s.Interrupted.String()
	}
}

// Facts are what the run's own events say about its verdict.
func (s *Session) Facts() Facts {
	f := Facts{TimedOut: s.TimedOut, Stuck: s.stuck, Diagnosis: s.diagnosis, InterruptedTwice: s.InterruptedTwice, Aborted: s.Aborted}
	for _, c := range s.Children {
		if o, msg := c.Problem(); o != proc.Clean && !c.WasKilled() {
			f.Failed, f.FailedMessage = o, msg
			break
		}
	}
	return f
}
