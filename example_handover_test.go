package mpmc_test

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"

	"github.com/shmq/mpmc"
	"golang.org/x/sys/unix"
)

// An anonymous queue handed over a unix socket: here both ends are in one
// process, over a socketpair; across processes the receiver is whoever
// accepted the connection (see examples/eventloop).
func ExampleCreateAnonymous() {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: 64, SlotSize: 128})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			log.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	defer a.Close()
	defer b.Close()

	if err := q.Send(a); err != nil {
		log.Fatal(err)
	}
	peer, err := mpmc.Receive(b) // a participant of its own
	if err != nil {
		log.Fatal(err)
	}
	defer peer.Close()

	q.TryEnqueue([]byte("through the memfd"))
	buf := make([]byte, peer.SlotSize())
	n, _ := peer.TryDequeue(buf)
	fmt.Println(string(buf[:n]))
	// Output: through the memfd
}

// Passing a queue to a child process through exec's ExtraFiles: the child
// finds the segment as descriptor 3 and joins with OpenFile, which opens a
// description of its own for its participant lock.
func ExampleQueue_File() {
	q, err := mpmc.CreateAnonymous(mpmc.Config{Capacity: 64, SlotSize: 128})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	f, err := q.File()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("/path/to/child") // which runs childMain below
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	f.Close() // else the child would share this handle's participant lock
	q.TryEnqueue([]byte("for the child"))
	cmd.Wait()
}

// childMain is the child's side of ExampleQueue_File.
func childMain() {
	f := os.NewFile(3, "queue")
	q, err := mpmc.OpenFile(f)
	if err != nil {
		log.Fatal(err)
	}
	f.Close()
	defer q.Close()
	buf := make([]byte, q.SlotSize())
	n, _ := q.TryDequeue(buf)
	fmt.Println(string(buf[:n]))
}

var _ = childMain
