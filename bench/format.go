package main

// Formatting of values for RESULTS.md and the charts.

import (
	"fmt"
	"math"
	"strings"
)

// scale3 is a value's display in three ranges: at least a million, at
// least a thousand, and below; each a format verb and a unit.
type scale3 [3]struct{ verb, unit string }

var (
	rateUnits  = scale3{{"%.2f", " M/s"}, {"%.1f", " k/s"}, {"%.0f", " /s"}}
	nsUnits    = scale3{{"%.2f", " ms"}, {"%.2f", " µs"}, {"%.1f", " ns"}}
	rateLabels = scale3{{"%g", "M"}, {"%g", "k"}, {"%g", ""}}
	nsLabels   = scale3{{"%g", "ms"}, {"%g", "µs"}, {"%g", "ns"}}
)

// format renders v in its range; NaN is "n/a".
func (s scale3) format(v float64) string {
	i, div := 2, 1.0
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v >= 1e6:
		i, div = 0, 1e6
	case v >= 1e3:
		i, div = 1, 1e3
	}
	return fmt.Sprintf(s[i].verb, v/div) + s[i].unit
}

// fmtRate renders messages per second.
func fmtRate(v float64) string { return rateUnits.format(v) }

// fmtNs renders nanoseconds.
func fmtNs(v float64) string { return nsUnits.format(v) }

func fmtX(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0fx", v)
	}
	return fmt.Sprintf("%.2fx", v)
}

func fmtG(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.3g", v)
}

func (r *Results) tputMechs() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range r.Throughput {
		if !seen[t.Mechanism] {
			seen[t.Mechanism] = true
			out = append(out, t.Mechanism)
		}
	}
	return out
}

func unitSep(u string) string {
	if u == "" || u == "x" {
		return u
	}
	return " " + u
}

func fmtSize(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func joinNs(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmtNs(x))
	}
	return strings.Join(s, ", ")
}

func joinG(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmtG(x))
	}
	return strings.Join(s, ", ")
}

func fmtCounts(c []syscallCount) string {
	var s []string
	for _, x := range c {
		s = append(s, fmt.Sprintf("%s %d", x.Name, x.Calls))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
