# The two commands a newcomer needs: `make stress` and `make test`.
GO ?= go
export GORACE ?= atexit_sleep_ms=0

.PHONY: test vet fmt bench stress fuzz-smoke interop

# Everything CI runs: formatting and vet, the library's tests under the race
# detector (including the multi-process ones, and the crash-point tests,
# which need the mpmc_hooks build tag), a fuzz smoke run, and the stress
# tester's tests plus a short multi-process run.
test: vet
	$(GO) test -race -tags mpmc_hooks -count=1 ./...
	$(MAKE) fuzz-smoke
	$(MAKE) stress-test
	$(MAKE) bench-test
	$(MAKE) interop
	$(MAKE) bridge-test
	$(MAKE) install-check
	$(MAKE) model

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags mpmc_hooks ./...

fmt:
	gofmt -w .

# A short coverage-guided run of each fuzz target over its committed seed
# corpus (testdata/fuzz); run longer with FUZZTIME=10m.
FUZZTIME ?= 10s
fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzSlots$$' -fuzztime $(FUZZTIME) .

# The benchmark harness (bench/, its own module): every mechanism, in and
# across processes, the reference Vyukov queue and shmipc-go, one run;
# writes bench/results/RESULTS.md, results.json and the charts.
bench:
	cd bench && $(GO) run . -out results

# The benchmark harness's own checks: vet, and its quick mode end to end
# (the structure of its output; never a timing assertion).
.PHONY: bench-test
bench-test:
	@cd bench && test -z "$$(gofmt -l .)" || { echo "gofmt needed in bench/:"; gofmt -l .; exit 1; }
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...

# The library's own testing.B benchmarks.
.PHONY: bench-lib
bench-lib:
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 5 .

# The multi-process stress tester (stress/, its own module): the default run,
# 4 producer and 4 consumer processes, exactly-once verified. Exit 0 only on OK.
stress:
	cd stress && $(GO) build -o bin/stress . && ./bin/stress run

# The stress tester's own checks, then a short run and a short chaos run
# that must both end OK (the binary exits 0 only with the OK verdict).
.PHONY: stress-test
stress-test:
	@cd stress && test -z "$$(gofmt -l .)" || { echo "gofmt needed in stress/:"; gofmt -l .; exit 1; }
	cd stress && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd stress && $(GO) build -o bin/stress . && ./bin/stress run -messages 200000 -timeout 2m
	cd stress && ./bin/stress run -backing memfd -messages 100000 -timeout 2m
	cd stress && ./bin/stress run -backing sysv -messages 100000 -timeout 2m
	cd stress && ./bin/stress chaos -duration 10s -kill-every 300ms -timeout 2m

# Chaos: 4 producer and 4 consumer processes for a minute while one of them,
# at random, is SIGKILLed every half second (on average) and replaced; the
# queue must never wedge and lose nothing the kills do not explain.
.PHONY: chaos
chaos:
	cd stress && $(GO) build -o bin/stress . && ./bin/stress chaos -duration 60s -kill-every 500ms

# The C participant (c/) against the Go library: C and Go producers and
# consumers on shared queues, wake-ups, Shutdown and crash recovery across
# languages (interop/, build tag interop, so that it runs here only), and
# examples/eventloop with its C readers required. Installs a C compiler if
# there is none.
.PHONY: interop
interop:
	@command -v cc >/dev/null 2>&1 || { apt-get update && apt-get install -y gcc; }
	$(GO) vet -tags interop ./interop/
	$(GO) test -race -tags interop -count=1 -v ./interop/
	EVENTLOOP_REQUIRE_C=1 $(GO) test -count=1 -run '^TestEventloop$$' ./examples/eventloop/
# The NATS JetStream bridge (bridge/, its own module): vet, its tests under
# the race detector (real processes, an embedded server on 127.0.0.1; the
# two-host run with 100,000 messages, the kills and server restarts, bad
# input), then the two-host run with one million messages without it
# (about 90 s on a 2-core VM).
.PHONY: bridge-test
bridge-test:
	@cd bridge && test -z "$$(gofmt -l .)" || { echo "gofmt needed in bridge/:"; gofmt -l .; exit 1; }
	cd bridge && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 20m ./...
	cd bridge && $(GO) test -count=1 -timeout 20m -run '^TestTwoHostsExactlyOnce$$' ./internal/cli/

# Messages per second through queue A -> out -> JetStream -> in -> queue B,
# next to the same producers publishing to JetStream directly (an embedded
# server in a temporary directory); medians of BRIDGE_REPS runs.
BRIDGE_MESSAGES ?= 200000
BRIDGE_REPS ?= 3
.PHONY: bridge-bench
bridge-bench:
	cd bridge && $(GO) build -o bin/mpmc-bridge ./cmd/mpmc-bridge && ./bin/mpmc-bridge -bench -messages $(BRIDGE_MESSAGES) -reps $(BRIDGE_REPS)

# go install of the tools as a user runs it (outside the workspace, from a
# module proxy in a temporary directory that serves this checkout as
# v0.1.0), then the installed stress and mpmc-bridge run.
.PHONY: install-check
install-check:
	.ci/install-check

# The SPIN model of the protocol (model/mpmc.pml, model/README.md): every
# configuration, exhaustively, safety and liveness; installs spin if missing.
.PHONY: model model-mutants spin
spin:
	@command -v spin >/dev/null || { apt-get update && apt-get install -y spin; }

model: spin
	model/run.sh

# Variants of the model with a known bug: each must be rejected.
model-mutants: spin
	model/run.sh mutants
