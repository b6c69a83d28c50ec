// Command mpmc-bridge moves messages between a local mpmc queue and NATS
// JetStream: -dir out publishes what it takes from the queue, -dir in
// enqueues what it reads from a durable consumer. See the README's section
// "Beyond one host: the NATS bridge" and package
// github.com/shmq/mpmc/bridge for the guarantees.
package main

import (
	"os"

	"github.com/shmq/mpmc/bridge/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
