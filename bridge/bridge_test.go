package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/shmq/mpmc"
)

func TestMsgID(t *testing.T) {
	c1 := time.Unix(0, 1_700_000_000_000_000_001)
	c2 := time.Unix(0, 1_700_000_000_000_000_002)
	ids := map[string]bool{}
	for _, c := range []time.Time{c1, c2} {
		for id := range uint64(3) {
			ids[MsgID("", c, id)] = true
		}
	}
	if len(ids) != 6 {
		t.Fatalf("IDs of 6 distinct messages collide: %v", ids)
	}
	if a, b := MsgID("h1/", c1, 7), MsgID("h1/", c1, 7); a != b {
		t.Fatalf("the same message has IDs %q and %q", a, b)
	}
	if MsgID("h1/", c1, 7) == MsgID("h2/", c1, 7) {
		t.Fatal("the prefix does not tell hosts apart")
	}
}

func TestRedelivers(t *testing.T) {
	for _, redeliver := range []bool{false, true} {
		path := fmt.Sprintf("/dev/shm/mpmc-bridge-unit-%d-%v", os.Getpid(), redeliver)
		q, err := mpmc.Create(path, mpmc.Config{Capacity: 2, SlotSize: 8, Redeliver: redeliver})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Redelivers(path)
		q.Close()
		os.Remove(path)
		if err != nil || got != redeliver {
			t.Fatalf("Redelivers of a queue created with Redeliver %v: %v, %v", redeliver, got, err)
		}
	}
}

func TestDialUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close()
	_, err = Dial(context.Background(), url, 300*time.Millisecond, "test")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Dial of a closed port: %v, want ErrUnreachable", err)
	}
}

func TestInvalidConfig(t *testing.T) {
	ctx := context.Background()
	if err := Out(ctx, nil, OutConfig{Queue: "/nonexistent", Window: -1, Subject: "s", Stream: "S"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Out with window -1: %v, want ErrInvalidConfig", err)
	}
	if err := Out(ctx, nil, OutConfig{Queue: "/nonexistent", Stream: "S"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Out without subject: %v, want ErrInvalidConfig", err)
	}
	if err := In(ctx, nil, InConfig{Queue: "/nonexistent", Stream: "S"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("In without durable: %v, want ErrInvalidConfig", err)
	}
	if err := In(ctx, nil, InConfig{Queue: "/nonexistent", Stream: "S", Durable: "d", Batch: 10, MaxAckPending: 5}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("In with MaxAckPending < Batch: %v, want ErrInvalidConfig", err)
	}
}
