package message

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{HeaderSize, HeaderSize + 1, HeaderSize + 7, 64, 100, 4096} {
		msg := make([]byte, size)
		want := Header{Producer: 7, Seq: 123456789, Sent: 987654321}
		Encode(msg, 42, want)
		got, err := Decode(msg, 42)
		if err != nil || got != want {
			t.Fatalf("size %d: Decode = %+v, %v; want %+v", size, got, err, want)
		}
	}
}

func TestEveryByteIsCovered(t *testing.T) {
	msg := make([]byte, 64)
	Encode(msg, 1, Header{Producer: 3, Seq: 9, Sent: 5})
	for i := range msg {
		bad := append([]byte(nil), msg...)
		bad[i] ^= 0x10
		if _, err := Decode(bad, 1); !errors.Is(err, ErrChecksum) {
			t.Fatalf("flipping byte %d: err = %v, want ErrChecksum", i, err)
		}
	}
}

func TestWrongSeedOrShort(t *testing.T) {
	msg := make([]byte, 64)
	Encode(msg, 1, Header{Producer: 3, Seq: 9})
	if _, err := Decode(msg, 2); !errors.Is(err, ErrPayload) {
		t.Fatalf("wrong seed: err = %v, want ErrPayload", err)
	}
	if _, err := Decode(msg[:HeaderSize-1], 1); !errors.Is(err, ErrShort) {
		t.Fatalf("short: err = %v, want ErrShort", err)
	}
	// A truncated message fails its checksum.
	if _, err := Decode(msg[:40], 1); !errors.Is(err, ErrChecksum) {
		t.Fatalf("truncated: err = %v, want ErrChecksum", err)
	}
}

func TestPayloadDependsOnSeq(t *testing.T) {
	a := make([]byte, 64)
	b := make([]byte, 64)
	Encode(a, 1, Header{Producer: 1, Seq: 1})
	Encode(b, 1, Header{Producer: 1, Seq: 2})
	if string(a[HeaderSize:]) == string(b[HeaderSize:]) {
		t.Fatal("payloads of different sequence numbers are equal")
	}
}

func BenchmarkEncodeDecode64(b *testing.B) {
	msg := make([]byte, 64)
	for i := 0; b.Loop(); i++ {
		Encode(msg, 1, Header{Producer: 1, Seq: uint64(i)})
		if _, err := Decode(msg, 1); err != nil {
			b.Fatal(err)
		}
	}
}
