package mpmc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func init() {
	// Receives an eventfd queue on descriptor 3 and consumes in an epoll
	// loop (the consumers' eventfd next to the socket) until Shutdown;
	// prints "<messages> <wakeups>".
	childRoles["epoll-consume"] = func(string) int {
		return epollChild(consumers)
	}
	// Likewise as a producer: enqueues MPMC_TEST_COUNT messages, waiting
	// in epoll on the producers' eventfd whenever the queue is full.
	childRoles["epoll-produce"] = func(string) int {
		return epollChild(producers)
	}
}

func epollChild(s side) int {
	sock := os.NewFile(3, "socket")
	q, err := receiveInherited("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "receive:", err)
		return 1
	}
	defer q.Close()
	ev := q.NotEmpty()
	if s == producers {
		ev = q.NotFull()
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "epoll:", err)
		return 1
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ev.Fd(), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ev.Fd())}); err != nil {
		fmt.Fprintln(os.Stderr, "epoll_ctl:", err)
		return 1
	}
	_ = sock // the socket was closed by receiveInherited; a real loop would watch it too
	count, _ := strconv.Atoi(os.Getenv(childCountEnv))
	got, wakes, sent := 0, 0, 0
	buf := make([]byte, q.SlotSize())
	deadline := time.Now().Add(time.Minute)
	events := make([]unix.EpollEvent, 4)
	for time.Now().Before(deadline) {
		// Drain.
		for {
			if s == consumers {
				_, err = q.TryDequeue(buf)
				if err == nil {
					got++
					continue
				}
				if errors.Is(err, ErrClosed) {
					fmt.Printf("%d %d", got, wakes)
					return 0
				}
				if !errors.Is(err, ErrEmpty) {
					fmt.Fprintln(os.Stderr, "dequeue:", err)
					return 1
				}
			} else {
				if sent == count {
					fmt.Printf("%d %d", sent, wakes)
					return 0
				}
				err = q.TryEnqueue([]byte(fmt.Sprintf("p%d", sent)))
				if err == nil {
					sent++
					continue
				}
				if !errors.Is(err, ErrFull) {
					fmt.Fprintln(os.Stderr, "enqueue:", err)
					return 1
				}
			}
			break
		}
		ready, poll, err := ev.Arm()
		if err != nil {
			fmt.Fprintln(os.Stderr, "arm:", err)
			return 1
		}
		if ready {
			continue
		}
		n, err := unix.EpollWait(ep, events, int(max(poll/time.Millisecond, 1)))
		if err != nil && err != unix.EINTR {
			fmt.Fprintln(os.Stderr, "epoll_wait:", err)
			return 1
		}
		if n > 0 {
			wakes++
			if err := ev.Consume(); err != nil {
				fmt.Fprintln(os.Stderr, "consume:", err)
				return 1
			}
		}
	}
	fmt.Fprintln(os.Stderr, "epoll loop ran out of time")
	return 1
}

func readable(fd int, timeout time.Duration) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(pfd, int(timeout/time.Millisecond))
	return n == 1
}

func TestEventfdArmSignal(t *testing.T) {
	q := newAnonymous(t, Config{Capacity: 4, SlotSize: 16, Eventfd: true})
	ne, nf := q.NotEmpty(), q.NotFull()
	require.NotNil(t, ne)
	require.NotNil(t, nf)
	// No waiter armed: a claim writes no event.
	require.NoError(t, q.TryEnqueue([]byte("a")))
	assert.False(t, readable(ne.Fd(), 10*time.Millisecond), "eventfd written without a waiter")
	ready, _, err := ne.Arm()
	require.NoError(t, err)
	assert.True(t, ready, "a message is there")
	buf := make([]byte, 16)
	_, err = q.TryDequeue(buf)
	require.NoError(t, err)

	ready, poll, err := ne.Arm()
	require.NoError(t, err)
	assert.False(t, ready)
	assert.Equal(t, idleSlice, poll, "nothing claimed before the announcement")
	assert.False(t, readable(ne.Fd(), 10*time.Millisecond))
	require.NoError(t, q.TryEnqueue([]byte("b")))
	assert.True(t, readable(ne.Fd(), time.Second), "the claim that saw the bit writes the eventfd")
	require.NoError(t, ne.Consume())
	assert.False(t, readable(ne.Fd(), 10*time.Millisecond), "Consume resets it")
	require.NoError(t, q.TryEnqueue([]byte("c")))
	assert.False(t, readable(ne.Fd(), 10*time.Millisecond), "one event per announcement")
	require.NoError(t, ne.Consume(), "nothing to consume is no error")

	// Producers: fill, arm, free a slot.
	for q.TryEnqueue([]byte("f")) == nil {
	}
	ready, _, err = nf.Arm()
	require.NoError(t, err)
	assert.False(t, ready)
	_, err = q.TryDequeue(buf)
	require.NoError(t, err)
	assert.True(t, readable(nf.Fd(), time.Second))
	require.NoError(t, nf.Consume())

	// Shutdown signals both and makes both ready.
	_, _, _ = ne.Arm()
	require.NoError(t, q.Shutdown())
	assert.True(t, readable(ne.Fd(), time.Second))
	ready, _, err = nf.Arm()
	require.NoError(t, err)
	assert.True(t, ready)
	require.NoError(t, q.Close())
	_, _, err = ne.Arm()
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, ne.Consume(), ErrClosed)
	assert.ErrorIs(t, ne.Wait(context.Background()), ErrClosed)
}

// TestEventfdShortHint: a claim made before the announcement (claimed,
// not published) makes Arm return a short poll hint.
func TestEventfdShortHint(t *testing.T) {
	q := newAnonymous(t, Config{Capacity: 4, SlotSize: 16, Eventfd: true})
	// A producer claim that is not published: claim by hand.
	rec := q.takeRecord()
	_, n, err := q.ring.claimWrite(rec, 1)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	ready, poll, err := q.NotEmpty().Arm()
	require.NoError(t, err)
	assert.False(t, ready)
	assert.Equal(t, shortSliceMin, poll)
	_, poll, _ = q.NotEmpty().Arm()
	assert.Equal(t, 2*shortSliceMin, poll, "doubling")
	q.ring.write(rec.Load()&recPosMask, []byte("late"), 0, 0)
	storeRelease(rec, 0)
	ready, _, err = q.NotEmpty().Arm()
	require.NoError(t, err)
	assert.True(t, ready)
}

// TestEventfdWaitHoldsNoThread: goroutines in Events.Wait are parked in
// the netpoller: 50 of them add no OS threads; one message wakes them.
func TestEventfdWaitHoldsNoThread(t *testing.T) {
	q := newAnonymous(t, Config{Capacity: 64, SlotSize: 16, Eventfd: true})
	before := threadCount(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const waiters = 50
	var wg sync.WaitGroup
	got := make(chan error, waiters)
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for {
				if _, err := q.TryDequeue(buf); !errors.Is(err, ErrEmpty) {
					got <- err
					return
				}
				if err := q.NotEmpty().Wait(ctx); err != nil {
					got <- err
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	during := threadCount(t)
	assert.LessOrEqual(t, during, before+5, "threads: %d before, %d with %d goroutines waiting", before, during, waiters)
	for range waiters {
		require.NoError(t, q.Enqueue(ctx, []byte("x")))
	}
	wg.Wait()
	close(got)
	for err := range got {
		assert.NoError(t, err)
	}
	// ctx ends a Wait.
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	start := time.Now()
	err := q.NotEmpty().Wait(short)
	for err == nil { // a left-over event: "try again"
		err = q.NotEmpty().Wait(short)
	}
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
	// Close ends a Wait.
	done := make(chan error, 1)
	go func() {
		err := q.NotEmpty().Wait(context.Background())
		for err == nil {
			err = q.NotEmpty().Wait(context.Background())
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, q.Close())
	err = recvWithin(t, done, 5*time.Second, "Wait not ended by Close")
	assert.ErrorIs(t, err, ErrClosed)
}

// TestProcessEventfdEpoll: a child consumes in an epoll loop, woken
// through the eventfd it received with the queue, while the parent
// enqueues in bursts with pauses (so that the child really waits); then
// Shutdown ends its loop. A second child produces through epoll into a
// small queue that the parent drains slowly.
func TestProcessEventfdEpoll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Run("consumer", func(t *testing.T) {
		q := newAnonymous(t, Config{Capacity: 16, SlotSize: 16, Eventfd: true})
		conn, other := socketPair(t)
		c := startChildWith(t, ctx, "epoll-consume", "", []*os.File{other})
		other.Close()
		require.NoError(t, q.Send(conn))
		const bursts, per = 20, 10
		for b := range bursts {
			for i := range per {
				require.NoError(t, q.Enqueue(ctx, []byte(fmt.Sprintf("%d.%d", b, i))))
			}
			time.Sleep(5 * time.Millisecond)
		}
		for q.Len() > 0 {
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, q.Shutdown())
		c.wait(t, time.Minute)
		var got, wakes int
		_, err := fmt.Sscanf(c.stdout.String(), "%d %d", &got, &wakes)
		require.NoError(t, err, "child printed %q", c.stdout.String())
		assert.Equal(t, bursts*per, got)
		assert.Greater(t, wakes, 0, "the child was woken through the eventfd")
		t.Logf("%d messages, %d eventfd wake-ups, %d wake-ups counted", got, wakes, q.Stats().ConsumerWakeups)
	})
	t.Run("producer", func(t *testing.T) {
		q := newAnonymous(t, Config{Capacity: 4, SlotSize: 16, Eventfd: true})
		conn, other := socketPair(t)
		const count = 200
		c := startChildWith(t, ctx, "epoll-produce", "", []*os.File{other}, childCountEnv+"="+strconv.Itoa(count))
		other.Close()
		require.NoError(t, q.Send(conn))
		buf := make([]byte, 16)
		for i := range count {
			n, err := q.Dequeue(ctx, buf)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("p%d", i), string(buf[:n]))
			if i%20 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		c.wait(t, time.Minute)
		var sent, wakes int
		_, err := fmt.Sscanf(c.stdout.String(), "%d %d", &sent, &wakes)
		require.NoError(t, err, "child printed %q", c.stdout.String())
		assert.Equal(t, count, sent)
		assert.Greater(t, wakes, 0)
	})
}
