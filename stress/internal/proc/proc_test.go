package proc

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommandLineRoundTrip(t *testing.T) {
	for _, role := range []Role{Producer, Consumer} {
		args := CommandLine(role, 7, []string{"-path", "/dev/shm/q"})
		if args[0] != Command {
			t.Fatalf("%q does not start with %s", args, Command)
		}
		got, rest, err := ParseCommandLine(args[1:])
		if err != nil || got != role || strings.Join(rest, " ") != "-id 7 -path /dev/shm/q" {
			t.Fatalf("%q: %v %q %v", args, got, rest, err)
		}
	}
	for _, bad := range [][]string{nil, {"-id", "1"}, {"sweeper"}} {
		if _, _, err := ParseCommandLine(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestHandshake(t *testing.T) {
	var out bytes.Buffer
	if err := SignalReady(&out); err != nil || out.String() != readyLine+"\n" {
		t.Fatalf("ready: %q %v", out.String(), err)
	}
	if err := AwaitGo(strings.NewReader("g")); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"", "x"} {
		if err := AwaitGo(strings.NewReader(in)); err == nil {
			t.Errorf("go from %q", in)
		}
	}
	out.Reset()
	if err := WriteResult(&out, Result{Role: Consumer, ID: 3, Messages: 10, Stop: "shutdown"}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.HasPrefix(s, resultPrefix+"{") || !strings.Contains(s, `"messages":10`) || !strings.HasSuffix(s, "}\n") {
		t.Fatalf("result line %q", s)
	}
}

func TestTestExitHook(t *testing.T) {
	t.Setenv(TestExitEnv, "consumer:1:5")
	if TestExitHook(Consumer, 2) != nil || TestExitHook(Producer, 1) != nil {
		t.Fatal("the hook names another child")
	}
	if TestExitHook(Consumer, 1) == nil {
		t.Fatal("no hook for the child named")
	}
	t.Setenv(TestExitEnv, "consumer:1:x")
	if TestExitHook(Consumer, 1) != nil {
		t.Fatal("a hook from a malformed count")
	}
}
