package main

// PNG charts drawn with gonum/plot: throughput by mechanism and ping-pong
// latency by mechanism. Both use a logarithmic value axis (the bars are
// log10 of the value, the ticks are labelled with the value), since the
// mechanisms differ by orders of magnitude.

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff},
}

// logTicks labels the axis of values log10(v)-base at each power of ten,
// with label(10^k).
func logTicks(base float64, label func(float64) string) plot.TickerFunc {
	return func(lo, hi float64) []plot.Tick {
		var ts []plot.Tick
		for k := math.Floor(lo); k <= math.Ceil(hi); k++ {
			if k >= lo && k <= hi {
				ts = append(ts, plot.Tick{Value: k, Label: label(math.Pow(10, k+base))})
			}
			for m := 2.0; m < 10; m++ {
				if v := k + math.Log10(m); v >= lo && v <= hi {
					ts = append(ts, plot.Tick{Value: v})
				}
			}
		}
		return ts
	}
}

// log10s returns log10(v)-base for each v (0 for what was not measured).
func log10s(vs []float64, base float64) plotter.Values {
	out := make(plotter.Values, len(vs))
	for i, v := range vs {
		if v > 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[i] = max(0, math.Log10(v)-base)
		}
	}
	return out
}

// barGroups draws a horizontal grouped bar chart: one group per category,
// one bar per series, values on a log axis.
func barGroups(title, xlabel string, cats []string, names []string, vals [][]float64, label func(float64) string, file string) error {
	// Bars start at the power of ten below the smallest value, and the axis
	// runs a decade and a half past the largest to leave the legend room.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, row := range vals {
		for _, v := range row {
			if v > 0 && !math.IsInf(v, 0) {
				lo, hi = min(lo, math.Log10(v)), max(hi, math.Log10(v))
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	base := math.Floor(lo - 0.5)
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.X.Tick.Marker = logTicks(base, label)
	p.Legend.Top = true
	const barW = 9
	for i, name := range names {
		bc, err := plotter.NewBarChart(log10s(vals[i], base), vg.Points(barW))
		if err != nil {
			return err
		}
		bc.Horizontal = true
		bc.Color = palette[i%len(palette)]
		bc.LineStyle.Width = 0
		bc.Offset = vg.Points(barW * (float64(len(names)-1)/2 - float64(i)))
		p.Add(bc)
		p.Legend.Add(name, bc)
	}
	p.NominalY(cats...)
	p.X.Min, p.X.Max = 0, math.Ceil(hi-base)+1.5
	p.Add(plotter.NewGrid())
	h := vg.Points(float64(len(cats)*len(names)*barW) + 40*float64(len(cats)) + 120)
	return p.Save(8*vg.Inch, h, file)
}

// writeCharts draws throughput.png and pingpong.png into dir.
func writeCharts(r *Results, dir string) error {
	// Zero-copy and copying run at other sizes (their own table).
	mechs := slices.DeleteFunc(r.tputMechs(), func(m string) bool { return m == mechZeroCopy || m == mechCopy })
	var names []string
	var vals [][]float64
	for _, size := range tputSizes {
		for _, sh := range tputShapes {
			names = append(names, fmt.Sprintf("%s %dP/%dC", fmtSize(size), sh[0], sh[1]))
			row := make([]float64, len(mechs))
			for i, m := range mechs {
				row[i] = r.tput(m, size, sh[0], sh[1]).Median
			}
			vals = append(vals, row)
		}
	}
	if err := barGroups("Cross-process throughput (median of repetitions)", "messages per second (log scale)",
		mechs, names, vals, rateLabels.format, filepath.Join(dir, "throughput.png")); err != nil {
		return fmt.Errorf("throughput chart: %w", err)
	}

	var cats []string
	p50, p99 := make([]float64, len(r.PingPong)), make([]float64, len(r.PingPong))
	for i, p := range r.PingPong {
		cats = append(cats, p.Name)
		p50[i], p99[i] = p.P50Ns.Median, p.P99Ns.Median
	}
	if err := barGroups("Ping-pong round trip, 64 B, two processes", "round trip (log scale)",
		cats, []string{"p50", "p99"}, [][]float64{p50, p99}, nsLabels.format, filepath.Join(dir, "pingpong.png")); err != nil {
		return fmt.Errorf("ping-pong chart: %w", err)
	}
	return nil
}
