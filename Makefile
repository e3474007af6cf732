GO ?= go
BIN := bin

.PHONY: build test bench run clean

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Runs every test: starts the brokers, S3 server and Python env the tests need.
test:
	bash scripts/test.sh

# The fan-out and reduce benchmarks (docs/benchmarks.md lists the others).
bench:
	$(GO) run ./bench/cmd/skein-bench fanout
	$(GO) run ./bench/cmd/skein-bench reduce

run:
	$(GO) run ./cmd/submit map --function add --iterdata '[1,2,3]' --extra-params '{"y":1}'

clean:
	rm -rf $(BIN)
