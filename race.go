//go:build race

package mpmc

// raceEnabled is true in race-detector builds (see pin.go).
const raceEnabled = true
