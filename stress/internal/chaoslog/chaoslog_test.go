package chaoslog

import (
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/shmq/mpmc/stress/internal/verify"
)

// childEnv makes the test binary act as a child that writes into the log
// on descriptor 3 and then kills itself: "consumer:N" appends N records,
// "producer:N" acknowledges N messages.
const childEnv = "CHAOSLOG_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(child(v))
	}
	os.Exit(m.Run())
}

func child(v string) int {
	role, n := v[:8], v[9:]
	count, _ := strconv.Atoi(n)
	kind := Consumer
	if role == "producer" {
		kind = Producer
	}
	l, err := Open(os.NewFile(3, "log"), kind)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 2
	}
	for i := range count {
		if kind == Producer {
			l.Ack(uint64(i + 1))
		} else {
			l.Append(verify.Record{Producer: uint32(i % 7), Seq: uint64(i), Corrupt: i == 3, At: int64(i) << 40})
		}
	}
	// Die without any chance to flush or unmap.
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func TestSurvivesSIGKILL(t *testing.T) {
	for _, c := range []struct {
		kind int
		env  string
	}{{Consumer, "consumer:1000"}, {Producer, "producer:1234"}} {
		l, err := Create("test", c.kind, 4096)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+c.env)
		cmd.ExtraFiles = []*os.File{l.File()}
		cmd.Stderr = os.Stderr
		err = cmd.Run()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("%s: child did not die of SIGKILL: %v", c.env, err)
		}
		if c.kind == Producer {
			if l.Acked() != 1234 {
				t.Fatalf("acked %d", l.Acked())
			}
		} else {
			var got []verify.Record
			n, err := l.Drain(func(rs []verify.Record) { got = append(got, rs...) })
			if err != nil || n != 1000 || len(got) != 1000 {
				t.Fatalf("drained %d, %v", n, err)
			}
			for i, r := range got {
				if r != (verify.Record{Producer: uint32(i % 7), Seq: uint64(i), Corrupt: i == 3, At: int64(i) << 40}) {
					t.Fatalf("record %d: %+v", i, r)
				}
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRingWrapsWithBackPressure(t *testing.T) {
	l, err := Create("ring", Consumer, 100) // rounded up to 128
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.ring != 128 {
		t.Fatalf("ring %d", l.ring)
	}
	// The writer maps the log a second time, as a child would.
	w, err := Open(l.File(), Consumer)
	if err != nil {
		t.Fatal(err)
	}
	defer w.unmap()
	const total = 100000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			w.Append(verify.Record{Producer: 1, Seq: uint64(i)})
		}
	})
	next := uint64(0)
	for next < total {
		if _, err := l.Drain(func(rs []verify.Record) {
			for _, r := range rs {
				if r.Seq != next || r.Producer != 1 {
					t.Errorf("record %d: %+v", next, r)
				}
				next++
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if l.Written() != total || w.Waits() == 0 {
		t.Fatalf("written %d, waits %d", l.Written(), w.Waits())
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	p, err := Create("p", Producer, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := Open(p.File(), Consumer); err == nil {
		t.Fatal("a producer log opened as a consumer log")
	}
	f, err := os.CreateTemp(t.TempDir(), "junk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(make([]byte, 4096))
	if _, err := Open(f, Producer); err == nil {
		t.Fatal("a file of zeros opened as a log")
	}
	if _, err := Create("bad", Consumer, 0); err == nil {
		t.Fatal("a consumer log without a ring")
	}
}
