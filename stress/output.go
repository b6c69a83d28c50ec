package main

// What every command prints: its lines for people as it goes and its
// verdict line last, or with -json one JSON document, verdict included.

import (
	"fmt"
	"io"

	"github.com/shmq/mpmc/stress/internal/harness"
)

// report is what a command prints last: its verdict, and under -json its
// whole content (every report embeds a harness.Verdict).
type report interface{ Get() *harness.Verdict }

// textReport is a report that prints itself for people (run, chaos): the
// other commands print their lines as they go, then the verdict line.
type textReport interface {
	report
	WriteText(w io.Writer)
}

// output is where a command prints, and how.
type output struct {
	w    io.Writer
	json bool
}

// say prints a line for people; under -json nothing (the report has it).
func (o *output) say(format string, a ...any) {
	if !o.json {
		fmt.Fprintf(o.w, format+"\n", a...)
	}
}

// end prints the report and returns the exit status that goes with it.
func (o *output) end(rep report) int {
	v := rep.Get()
	if o.json {
		if err := harness.WriteJSON(o.w, rep); err != nil {
			return exitError
		}
		return v.ExitCode
	}
	if t, ok := rep.(textReport); ok {
		t.WriteText(o.w)
	} else {
		fmt.Fprintln(o.w, v.Line)
	}
	return v.ExitCode
}

// error ends the command with an ERROR verdict of cause.
func (o *output) error(cause harness.Cause, format string, a ...any) int {
	var v harness.Verdict
	v.Error(cause, format, a...)
	return o.end(&v)
}
