# The two commands a newcomer needs: `make stress` and `make test`.
GO ?= go
export GORACE ?= atexit_sleep_ms=0

.PHONY: test vet fmt bench stress fuzz-smoke

test: vet
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz-smoke

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

fmt:
	gofmt -w .

fuzz-smoke:
	@echo "fuzz smoke runs are added with the fuzz tests"

# The benchmark harness (bench/, its own module): every mechanism, in and
# across processes, one run; writes bench/RESULTS.md, results.json, charts.
bench:
	cd bench && $(GO) run . -out .

# The library's own testing.B benchmarks.
.PHONY: bench-lib
bench-lib:
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 5 .

stress:
	@echo "the stress tester lands with issue 3"; exit 1
