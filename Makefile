# The two commands a newcomer needs: `make stress` and `make test`.
GO ?= go
export GORACE ?= atexit_sleep_ms=0

.PHONY: test vet fmt bench stress fuzz-smoke

# Everything CI runs: formatting and vet, the library's tests under the race
# detector (including the multi-process ones, and the crash-point tests,
# which need the mpmc_hooks build tag), a fuzz smoke run, and the stress
# tester's tests plus a short multi-process run.
test: vet
	$(GO) test -race -tags mpmc_hooks -count=1 ./...
	$(MAKE) fuzz-smoke
	$(MAKE) stress-test
	$(MAKE) bench-test
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
# across processes, one run; writes bench/RESULTS.md, results.json, charts.
bench:
	cd bench && $(GO) run . -out .

# The benchmark harness's own checks: vet, and its quick mode end to end
# (the structure of its output; never a timing assertion).
.PHONY: bench-test
bench-test:
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
	cd stress && ./bin/stress chaos -duration 10s -kill-every 300ms -timeout 2m

# Chaos: 4 producer and 4 consumer processes for a minute while one of them,
# at random, is SIGKILLed every half second (on average) and replaced; the
# queue must never wedge and lose nothing the kills do not explain.
.PHONY: chaos
chaos:
	cd stress && $(GO) build -o bin/stress . && ./bin/stress chaos -duration 60s -kill-every 500ms

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
