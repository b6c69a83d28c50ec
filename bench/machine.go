package main

// A description of the machine the numbers were measured on.

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machine identifies where and when a run happened.
type machine struct {
	CPUModel   string
	Cores      int // logical CPUs listed in /proc/cpuinfo
	NumCPU     int // CPUs usable by this process
	GOMAXPROCS int
	Kernel     string
	GoVersion  string
	GOARCH     string
	Date       string
	Library    string // the library's commit, and whether its Go files had uncommitted changes
}

func machineInfo() machine {
	m := machine{
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		GOARCH:     runtime.GOARCH,
		Date:       time.Now().UTC().Format(time.RFC3339),
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				if m.CPUModel == "" {
					m.CPUModel = strings.TrimSpace(v)
				}
			case "processor":
				m.Cores++
			}
		}
		f.Close()
	}
	m.Library = libraryVersion()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	return m
}

// libraryVersion describes the library source the harness was built from
// (the parent directory, per the replace directive in go.mod).
func libraryVersion() string {
	out, err := exec.Command("git", "-C", "..", "log", "-1", "--format=%h %cI %s").Output()
	if err != nil {
		return "unknown (no git)"
	}
	v := strings.TrimSpace(string(out))
	if len(v) > 90 {
		v = v[:90] + "..."
	}
	dirty, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no", "--", "*.go", ":!bench", ":!stress").Output()
	if err == nil && len(strings.TrimSpace(string(dirty))) > 0 {
		v += " (plus uncommitted changes to: " + strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(dirty)), "M ", "")), ", ") + ")"
	}
	return v
}
