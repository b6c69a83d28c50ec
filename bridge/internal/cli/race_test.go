//go:build race

package cli

// raceEnabled: the race detector slows the bridges about fivefold.
const raceEnabled = true
