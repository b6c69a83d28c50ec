package main

// (A queue of capacity 64 takes the 50 messages without a consumer.)
//
// Every command prints its report as one JSON document under -json, with
// the verdict, exit code and cause the text form ends with; `stress -h`
// lists the commands.

import (
	"encoding/json"
	"strings"
	"testing"
)

// verdictOf decodes the JSON output of r and checks its verdict against
// the exit status.
func verdictOf(t *testing.T, r result, v any) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("output is not one JSON document: %v\n%v", err, r)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := m["exit_code"].(float64); int(code) != r.code {
		t.Fatalf("exit_code %v, exit status %d\n%v", m["exit_code"], r.code, r)
	}
	return m
}

func TestEveryCommandJSON(t *testing.T) {
	path := shmPath(t, "json")
	var cr createReport
	m := verdictOf(t, run(t, nil, "create", "-path", path, "-capacity", "64", "-json"), &cr)
	if cr.Line != "OK: created "+path+": capacity 64, slot size 64, mode 0600 (remove it with rm when done)" || cr.Capacity != 64 || m["cause"] != "ok" {
		t.Fatalf("create: %+v", cr)
	}
	var pr produceReport
	verdictOf(t, run(t, nil, "produce", "-path", path, "-id", "3", "-messages", "50", "-json"), &pr)
	if pr.Line != "OK: produced 50 messages as producer 3" || pr.Messages != 50 || pr.Stop != stopCount {
		t.Fatalf("produce: %+v", pr)
	}
	var ir inspectReport
	verdictOf(t, run(t, nil, "inspect", "-path", path, "-json"), &ir)
	if !strings.HasPrefix(ir.Line, "OK: "+path+" is a queue segment") || ir.Capacity != 64 || ir.Stats.EnqueuePos != 50 {
		t.Fatalf("inspect: %+v", ir)
	}
	var sr shutdownReport
	verdictOf(t, run(t, nil, "shutdown", "-path", path, "-json"), &sr)
	if sr.Len != 50 || !strings.HasPrefix(sr.Line, "OK: ") {
		t.Fatalf("shutdown: %+v", sr)
	}
	var cons consumeReport
	verdictOf(t, run(t, nil, "consume", "-path", path, "-json"), &cons)
	if cons.Messages != 50 || len(cons.Producers) != 1 || cons.Producers[0].Producer != 3 || cons.Producers[0].Last != 49 || cons.Latency == nil || cons.Stop != stopShutdown {
		t.Fatalf("consume: %+v", cons)
	}
	var cl cleanReport
	verdictOf(t, run(t, nil, "clean", "-dir", t.TempDir(), "-n", "-json"), &cl)
	if !strings.HasPrefix(cl.Line, "OK: 0 unused queue segments") {
		t.Fatalf("clean: %+v", cl)
	}
	// Errors after the flags were read are JSON too, with their cause.
	m = verdictOf(t, run(t, nil, "inspect", "-path", path+"-missing", "-json"), nil)
	if r := m["verdict"].(string); !strings.HasPrefix(r, "ERROR: inspect: ") || m["cause"] != "queue" {
		t.Fatalf("inspect of a missing path: %v", m)
	}
	m = verdictOf(t, run(t, nil, "run", "-producers", "0", "-json"), nil)
	if m["verdict"] != "ERROR: run: -producers and -consumers must be at least 1" || m["cause"] != "usage" {
		t.Fatalf("run with bad flags: %v", m)
	}
	m = verdictOf(t, run(t, nil, "chaos", "-kill-every", "1ms", "-json"), nil)
	if !strings.HasPrefix(m["verdict"].(string), "ERROR: chaos: -kill-every 1ms") {
		t.Fatalf("chaos with bad flags: %v", m)
	}
}

func TestHelpListsCommands(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}} {
		r := run(t, nil, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d\n%v", args, r.code, r)
		}
		for _, c := range commands {
			if !strings.Contains(r.stdout, "\n  "+c.name+" ") {
				t.Errorf("%v does not list %s:\n%s", args, c.name, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "__child") {
			t.Errorf("%v lists the hidden child command", args)
		}
	}
	// A command's own -h still lists its flags.
	if r := run(t, nil, "chaos", "-h"); r.code != 0 || !strings.Contains(r.stderr, "-kill-every") {
		t.Fatalf("chaos -h:\n%v", r)
	}
}
