package main

import (
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// newProgressBar returns the live progress bar of a run, on stdout. It is
// only made when stdout is a terminal: a known message count shows a bar,
// a duration run a spinner with the count.
func newProgressBar(cfg runConfig) *progressbar.ProgressBar {
	max := int64(cfg.Messages)
	if cfg.Messages == 0 {
		max = -1
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(os.Stdout),
		progressbar.OptionSetDescription("messages"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("msg"),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
	)
}
