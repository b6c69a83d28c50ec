package mpmc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const nrHugepages = "/proc/sys/vm/nr_hugepages"

// reserveHugePages makes at least n huge pages free in the hugetlb pool,
// through /proc/sys/vm/nr_hugepages where the kernel lets us, and puts the
// old value back when the test ends; otherwise it skips the test, saying
// why.
func reserveHugePages(t testing.TB, n int) {
	t.Helper()
	if HugePageSize() == 0 {
		t.Skip("no huge pages in this kernel (no Hugepagesize in /proc/meminfo)")
	}
	old, err := os.ReadFile(nrHugepages)
	if err != nil {
		t.Skipf("cannot read %s: %v", nrHugepages, err)
	}
	cur, _ := strconv.Atoi(strings.TrimSpace(string(old)))
	free, _ := strconv.Atoi(hugeFree())
	if free >= n {
		return
	}
	if err := os.WriteFile(nrHugepages, []byte(strconv.Itoa(cur+n-free)), 0); err != nil {
		t.Skipf("cannot reserve %d huge pages through %s: %v", n, nrHugepages, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(nrHugepages, old, 0); err != nil {
			t.Errorf("restore %s to %s: %v", nrHugepages, strings.TrimSpace(string(old)), err)
		}
	})
	if free, _ = strconv.Atoi(hugeFree()); free < n {
		t.Skipf("asked the kernel for %d more huge pages, %d free (memory too fragmented?)", n, free)
	}
}

func TestHugePagesAnonymous(t *testing.T) {
	reserveHugePages(t, 4)
	q := newAnonymous(t, Config{Capacity: 64, SlotSize: 64 << 10, HugePages: true})
	hp := hugePageSizeOf(q.seg.f)
	require.NotZero(t, hp, "the memfd is on hugetlbfs")
	require.NotNil(t, q.seg.whole)
	assert.Zero(t, uint64(len(q.seg.whole))%hp, "whole huge pages mapped")
	assert.Equal(t, int(q.seg.totalSize), len(q.seg.mem))
	r := handOver(t, q) // sealed, validated, mapped in whole huge pages
	assert.NotNil(t, r.seg.whole)
	msg := make([]byte, 64<<10)
	for i := range msg {
		msg[i] = byte(i)
	}
	buf := make([]byte, 64<<10)
	for range 200 {
		require.NoError(t, q.TryEnqueue(msg))
		n, err := r.TryDequeue(buf)
		require.NoError(t, err)
		require.Equal(t, msg, buf[:n])
	}
	require.NoError(t, r.Close())
	require.NoError(t, q.Close())
}

func TestHugePagesNoneAvailable(t *testing.T) {
	if HugePageSize() == 0 {
		t.Skip("no huge pages in this kernel")
	}
	old, err := os.ReadFile(nrHugepages)
	require.NoError(t, err)
	if free, _ := strconv.Atoi(hugeFree()); free > 0 {
		// Empty the pool for the test, where we may.
		if err := os.WriteFile(nrHugepages, []byte("0"), 0); err != nil {
			t.Skipf("huge pages are free and %s is not writable: %v", nrHugepages, err)
		}
		t.Cleanup(func() { os.WriteFile(nrHugepages, old, 0) })
		if free, _ := strconv.Atoi(hugeFree()); free > 0 {
			t.Skip("huge pages still free (in use elsewhere)")
		}
	}
	before := fdList()
	_, err = CreateAnonymous(Config{Capacity: 64, SlotSize: 1024, HugePages: true})
	require.ErrorIs(t, err, ErrNoHugePages)
	assert.Contains(t, err.Error(), "nr_hugepages")
	assert.Equal(t, before, fdList())
}

func TestHugePagesNamedTmpfs(t *testing.T) {
	p := segPath(t)
	q, err := Create(p, Config{Capacity: 64, SlotSize: 1024, HugePages: true})
	if ok, why := shmemTHP(); !ok {
		require.ErrorIs(t, err, ErrNoHugePages)
		assert.Contains(t, err.Error(), why)
		_, serr := os.Lstat(p)
		assert.True(t, os.IsNotExist(serr), "nothing left at the path")
		return
	}
	require.NoError(t, err)
	q.Close()
}

// BenchmarkHugePages: an enqueue and a dequeue of 1 to 64 KiB through a
// ring of 16 MiB and more (beyond the TLB's reach with 4 KiB pages), with
// and without huge pages.
func BenchmarkHugePages(b *testing.B) {
	for _, size := range []int{1 << 10, 4 << 10, 16 << 10, 64 << 10} {
		for _, huge := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%dKiB/huge=%v", size>>10, huge), func(b *testing.B) {
				capacity := max(16<<20/size, 256)
				if huge {
					reserveHugePages(b, (capacity*(size+64)+headerSize)/HugePageSize()+2)
				}
				q, err := CreateAnonymous(Config{Capacity: capacity, SlotSize: size, HugePages: huge})
				require.NoError(b, err)
				defer q.Close()
				msg, buf := make([]byte, size), make([]byte, size)
				// Keep the ring half full, so that the copies walk it.
				for range capacity / 2 {
					require.NoError(b, q.TryEnqueue(msg))
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				for range b.N {
					q.TryEnqueue(msg)
					q.TryDequeue(buf)
				}
			})
		}
	}
}
