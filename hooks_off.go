//go:build !mpmc_hooks

package mpmc

// hooksEnabled is false: normal builds have no crash-test hooks.
const hooksEnabled = false

func hook(hookPoint) {}

func hookForcesUnpinned() bool { return false }
