#!/usr/bin/env bash
# `make e2e`: the cluster tests. Brings the cluster up (make cluster), builds and loads the images
# (make images), then runs tests/e2e with SHARDSET_E2E=1 (so a missing cluster fails, never skips).
#   phase 1: every tests/e2e/tests/cluster_*.rs test on the shared cluster;
#   phase 2: the #[ignore]d recovery scenarios of cluster_recovery.rs (a killed `make cluster`, cluster-down leaving
#            nothing, a dead Docker) that tear things down, alone, after phase 1.
# SHARDSET_E2E_PHASES=1 runs phase 1 only (for a developer sharing the cluster with others).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

exports=$("$CLUSTER_DIR/up.sh")
eval "$exports"
"$CLUSTER_DIR/images.sh"
export SHARDSET_E2E=1 SHARDSET_BIN_DIR="$BIN_DIR"
cd "$REPO_DIR"
log "phase 1: cluster tests on $CLUSTER_NAME"
cargo test -p shardset-e2e
if [[ ${SHARDSET_E2E_PHASES:-2} -ge 2 ]]; then
  log "phase 2: recovery scenarios (they stop and remake clusters and Docker)"
  cargo test -p shardset-e2e --test cluster_recovery -- --ignored --test-threads=1
fi
