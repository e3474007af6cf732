GO ?= go
BIN := bin

.PHONY: build test bench run clean chaos million

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Runs every test: starts the brokers, S3 server and Python env the tests need.
test:
	bash scripts/test.sh

# The chaos suite (docs/chaos.md), CHAOS_ROUNDS rounds per bus: on
# RabbitMQ, and on NATS with Debian's nats-server (the oldest supported)
# and the one built from the nats-server module this project requires.
# make test runs one round per bus, on Debian's nats-server only.
CHAOS_ROUNDS ?= 10
FLEET_KILLS ?= 20
chaos:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/nats-server-module github.com/nats-io/nats-server/v2
	cd internal/chaos && SKEIN_CHAOS_ROUNDS=$(CHAOS_ROUNDS) \
		SKEIN_CHAOS_NATS_SERVER="$$(command -v nats-server),$(CURDIR)/$(BIN)/nats-server-module" \
		$(GO) test -count=1 -timeout 0 -v -run '^TestChaos' .
	cd internal/chaos && SKEIN_FLEET_KILLS=$(FLEET_KILLS) $(GO) test -count=1 -timeout 0 -v -run '^TestFleet' .

# The fan-out and reduce benchmarks (docs/benchmarks.md lists the others).
bench:
	$(GO) run ./bench/cmd/skein-bench fanout
	$(GO) run ./bench/cmd/skein-bench reduce
	$(GO) run ./bench/cmd/skein-bench fleet

# Million-task jobs at full size (docs/benchmarks.md#million-task-jobs):
# TestLargeInputs (50 MB --data-from, 200 MB iterdata, embedded and on
# both buses) and TestMillionTasks (1,000,000 no-op tasks embedded and on
# nats-server with a coordinator SIGKILLed and restarted mid-job, its peak
# RSS under 400 MB); make test runs both scaled down. Then the benchmark:
# wall time and peak RSS, medians of 3. Needs the services of make test
# (source the environment scripts/test.sh exports).
million:
	SKEIN_MILLION=1 $(GO) test -count=1 -timeout 0 -v -run 'TestLargeInputs|TestMillionTasks' ./pkg/cli/
	$(GO) run ./bench/cmd/skein-bench million -buses embedded,nats,amqp

run:
	$(GO) run ./cmd/submit map --function add --iterdata '[1,2,3]' --extra-params '{"y":1}'

clean:
	rm -rf $(BIN)

# Node losses on the 3-node NATS and RabbitMQ clusters (internal/cluster,
# docs/chaos.md): CHAOS_ROUNDS rounds per bus, each SIGKILLing the node the
# coordinator is on mid-job; the clusters are started for it in a
# directory of their own and stopped after. make chaos runs it too.
.PHONY: chaos-cluster
chaos-cluster:
	SKEIN_CLUSTER_ROUNDS=$(CHAOS_ROUNDS) bash scripts/with-clusters.sh \
		$(GO) test -count=1 -timeout 0 -v -run '^TestNodeLoss' ./internal/cluster
chaos: chaos-cluster
