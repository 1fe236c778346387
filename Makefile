# Entry points. Every target is documented in the README ("Make targets").
# Scripts live beside what they serve (tests/cluster/, tests/demo/); this file only names them.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help test lint unit unit-python test-tools generate check-generated cluster cluster-down images e2e test-upgrade demo bench bench-bus bench-gate bench-operator bench-operator-scale bench-scale bench-fake

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: lint check-generated unit unit-python e2e ## Everything CI runs: lint, generated files, unit, in-process and cluster tests.

lint: ## cargo fmt --check and clippy -D warnings.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: test-tools ## Unit tests and the in-process tests (fake Discord, real redis-server and nats-server).
	$(CARGO) test --workspace --exclude shardset-e2e

unit-python: test-tools ## The Python handler library's tests (pytest, real nats-server, a Rust replica alongside); venv cached.
	@handlers/python/test.sh

test-tools: ## Build what the in-process tests run that Debian lacks (nats-server, from its Go module; cached).
	@tests/cluster/build-go.sh tests

generate: ## Regenerate the CRD YAML from the Rust types.
	$(CARGO) run -q -p shardset-operator --bin crdgen > crds/shardset.io_shardsets.yaml.tmp
	mv crds/shardset.io_shardsets.yaml.tmp crds/shardset.io_shardsets.yaml
	cp crds/shardset.io_shardsets.yaml charts/shardset-operator/crds/shardset.io_shardsets.yaml

check-generated: ## Fail when the checked-in generated files are stale.
	@$(CARGO) run -q -p shardset-operator --bin crdgen | diff -u crds/shardset.io_shardsets.yaml - \
		|| { echo "crds/shardset.io_shardsets.yaml is stale: run make generate" >&2; exit 1; }
	@diff -u crds/shardset.io_shardsets.yaml charts/shardset-operator/crds/shardset.io_shardsets.yaml \
		|| { echo "the chart's CRD differs from crds/: run make generate" >&2; exit 1; }

cluster: ## Bring the kind test cluster up (idempotent). Prints exports: eval "$$(make -s cluster)".
	@tests/cluster/up.sh

cluster-down: ## Delete the test cluster; stop what the harness started (by PID).
	@tests/cluster/down.sh

images: ## Build the project's images (static, FROM scratch) and kind-load them into the cluster.
	@tests/cluster/images.sh

e2e: ## Cluster tests on kind: make cluster, make images, then tests/e2e (SHARDSET_E2E=1).
	@tests/cluster/e2e.sh

test-upgrade: ## helm upgrade from the previous chart version (0.1.0, its images built once and cached) to this one on a running bot: sessions resumed, no Identify, 0 violations.
	@tests/cluster/upgrade.sh

demo: ## The no-token demo: cluster, images, operator chart + Redis, fake Discord, a ShardSet reaching Ready.
	@tests/demo/demo.sh

bench-operator: ## Benchmark on kind: kubectl apply of a 100-pod ShardSet -> all pods created, all Ready (prints seconds).
	@set -e; eval "$$(tests/cluster/up.sh)"; tests/cluster/images.sh; \
	SHARDSET_E2E=1 SHARDSET_BENCH=1 \
	SHARDSET_OPERATOR_BIN="$${CARGO_TARGET_DIR:-$(CURDIR)/target}/x86_64-unknown-linux-musl/release/shardset-operator" \
	$(CARGO) test -q -p shardset-e2e --test operator_bench -- --nocapture

bench-operator-scale: ## Benchmark on kind: the operator at scale, 20 ShardSets x 64 shards at 16 per pod (80 pods), one fake per bot, the chart's Redis -> reconcile p50/p99, operator memory, API requests/min at rest (lines operator-scale: ...). SHARDSET_OPSCALE_SHARDSETS=20 etc.
	@set -e; eval "$$(tests/cluster/up.sh)"; tests/cluster/images.sh; \
	SHARDSET_E2E=1 SHARDSET_BENCH=1 \
	$(CARGO) test -q -p shardset-e2e --test scale_bench -- --nocapture bench_operator_scale

bench-scale: ## Benchmark on kind: fresh operator chart + Redis, the fake at a 1 s Identify window; a 1,024-shard ShardSet at 8 per pod -> all READY against the minimum (last line: bench-scale: ...). SHARDSET_SCALE_WINDOW_MS=250 etc.
	@set -e; eval "$$(tests/cluster/up.sh)"; tests/cluster/images.sh; \
	line=$$(mktemp); trap 'rm -f "$$line"' EXIT; \
	SHARDSET_E2E=1 SHARDSET_BENCH=1 SHARDSET_BENCH_LINE_FILE="$$line" \
	$(CARGO) test -q -p shardset-e2e --test scale_bench -- --nocapture bench_scale; \
	cat "$$line"

bench: test-tools ## Side-by-side benchmarks vs twilight-gateway on the fake Discord (zstd-stream and zlib-stream), the bus path's cost and the scaling curve at 1-1,024 shards (release; prints ratios). BENCH_ARGS=--help
	$(CARGO) build --release -p shard-worker -p shardset-bench
	@# twilight's zstd-stream client on its own: in one build its feature would reach every twilight.
	$(CARGO) build --release -p twilight-shards-zstd --features zstd
	"$${CARGO_TARGET_DIR:-target}/release/shardset-bench" $(BENCH_ARGS)

bench-bus: ## The bus path alone: a worker's dispatches per CPU-second publishing to a local nats-server with acks, beside in-process handling (release; prints figures).
	$(MAKE) --no-print-directory bench BENCH_ARGS="--only bus $(BENCH_ARGS)"

# The Identify gate's hand-offs at scale: shards, processes and max_concurrency of the run.
GATE_ARGS ?= --shards 1024 --processes 16 --concurrency 16

bench-gate: ## The Identify gate at scale: cold start of 1,024 shards in 16 worker processes (C=16) at 1,000 and 250 ms windows; bucket gaps beyond window + margin (release; prints figures). GATE_ARGS=...
	$(MAKE) --no-print-directory bench BENCH_ARGS="--only cold --worker-only --window-ms 1000 $(GATE_ARGS)"
	"$${CARGO_TARGET_DIR:-target}/release/shardset-bench" --only cold --worker-only --window-ms 250 $(GATE_ARGS)

bench-fake: ## Capacity of one fake-discord process: 2,000 zlib-stream connections, dispatches/s (release; prints figures).
	$(CARGO) bench -p fake-discord --bench capacity
