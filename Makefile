# Entry points. Every target is documented in the README ("Make targets").
# Scripts live beside what they serve (tests/cluster/, tests/demo/); this file only names them.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help test lint unit generate check-generated cluster cluster-down images demo bench

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: lint check-generated unit ## Everything CI runs: lint, generated files, unit and in-process tests.

lint: ## cargo fmt --check and clippy -D warnings.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: ## Unit tests and the in-process tests (fake Discord, real redis-server).
	$(CARGO) test --workspace --exclude shardset-e2e

generate: ## Regenerate the CRD YAML from the Rust types.
	$(CARGO) run -q -p shardset-operator --bin crdgen > crds/shardset.io_shardsets.yaml.tmp
	mv crds/shardset.io_shardsets.yaml.tmp crds/shardset.io_shardsets.yaml

check-generated: ## Fail when the checked-in generated files are stale.
	@$(CARGO) run -q -p shardset-operator --bin crdgen | diff -u crds/shardset.io_shardsets.yaml - \
		|| { echo "crds/shardset.io_shardsets.yaml is stale: run make generate" >&2; exit 1; }
