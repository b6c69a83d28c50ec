package mpmc

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"pgregory.net/rapid"
)

// queueModel is the specification the queue is checked against: a slice of
// messages, a capacity and a shutdown flag.
type queueModel struct {
	capacity, slotSize int
	msgs               [][]byte
	shutdown           bool
}

// TestModel drives random sequences of operations through two handles on
// one segment and checks every result against queueModel.
func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		capacity := 1 << rapid.IntRange(1, 4).Draw(rt, "log2 capacity")
		slotSize := rapid.IntRange(1, 40).Draw(rt, "slot size")
		p := segPath(t)
		defer os.Remove(p)
		q1, err := Create(p, Config{Capacity: capacity, SlotSize: slotSize})
		if err != nil {
			rt.Fatalf("create: %v", err)
		}
		q2, err := Open(p)
		if err != nil {
			rt.Fatalf("open: %v", err)
		}
		handles := []*Queue{q1, q2}
		defer func() {
			for _, h := range handles {
				h.Close()
			}
		}()
		m := &queueModel{capacity: capacity, slotSize: slotSize}
		handle := func(rt *rapid.T) (int, *Queue) {
			i := rapid.IntRange(0, len(handles)-1).Draw(rt, "handle")
			return i, handles[i]
		}

		rt.Repeat(map[string]func(*rapid.T){
			"TryEnqueue": func(rt *rapid.T) {
				_, h := handle(rt)
				msg := rapid.SliceOfN(rapid.Byte(), 0, slotSize+2).Draw(rt, "msg")
				err := h.TryEnqueue(msg)
				var want error
				switch {
				case len(msg) > slotSize:
					want = ErrTooLarge
				case m.shutdown:
					want = ErrClosed
				case len(m.msgs) == capacity:
					want = ErrFull
				default:
					m.msgs = append(m.msgs, bytes.Clone(msg))
				}
				if !errors.Is(err, want) || (want == nil && err != nil) {
					rt.Fatalf("TryEnqueue(%d bytes) = %v, want %v", len(msg), err, want)
				}
			},
			"TryDequeue": func(rt *rapid.T) {
				_, h := handle(rt)
				buf := make([]byte, rapid.IntRange(0, slotSize+1).Draw(rt, "buf"))
				n, err := h.TryDequeue(buf)
				switch {
				case len(m.msgs) == 0 && m.shutdown:
					if err != ErrClosed {
						rt.Fatalf("TryDequeue on a drained, shut queue = %d, %v", n, err)
					}
				case len(m.msgs) == 0:
					if err != ErrEmpty {
						rt.Fatalf("TryDequeue on an empty queue = %d, %v", n, err)
					}
				case len(m.msgs[0]) > len(buf):
					if err != io.ErrShortBuffer {
						rt.Fatalf("TryDequeue of %d bytes into %d = %d, %v", len(m.msgs[0]), len(buf), n, err)
					}
				default:
					if err != nil || !bytes.Equal(buf[:n], m.msgs[0]) {
						rt.Fatalf("TryDequeue = %q, %v; want %q", buf[:n], err, m.msgs[0])
					}
					m.msgs = m.msgs[1:]
				}
			},
			"Shutdown": func(rt *rapid.T) {
				if !rapid.Bool().Draw(rt, "really") { // keep it rarer
					return
				}
				_, h := handle(rt)
				if err := h.Shutdown(); err != nil {
					rt.Fatalf("Shutdown: %v", err)
				}
				m.shutdown = true
			},
			"Reopen": func(rt *rapid.T) {
				i, h := handle(rt)
				if err := h.Close(); err != nil {
					rt.Fatalf("Close: %v", err)
				}
				if err := h.TryEnqueue(nil); err != ErrClosed {
					rt.Fatalf("TryEnqueue after Close = %v", err)
				}
				nh, err := Open(p)
				if err != nil {
					rt.Fatalf("reopen: %v", err)
				}
				handles[i] = nh
			},
			"": func(rt *rapid.T) {
				for _, h := range handles {
					if got := h.Len(); got != len(m.msgs) {
						rt.Fatalf("Len = %d, model has %d", got, len(m.msgs))
					}
					st := h.Stats()
					if st.Shutdown != m.shutdown || st.Capacity != capacity || st.SlotSize != slotSize {
						rt.Fatalf("Stats %+v disagrees with model (shutdown %v)", st, m.shutdown)
					}
				}
			},
		})
	})
}
