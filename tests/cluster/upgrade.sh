#!/usr/bin/env bash
# `make test-upgrade`: `helm upgrade` from the previous chart version to this one on a running bot
# (tests/e2e/tests/upgrade_chart.rs, ignored in `make e2e`). Brings the cluster up (make cluster),
# builds and loads this tree's images (make images) and the previous release's (built once from
# its own sources and cached: previous-release.sh), then runs the scenario.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

eval "$("$CLUSTER_DIR/up.sh")"
"$CLUSTER_DIR/images.sh"
eval "$("$CLUSTER_DIR/previous-release.sh")"
export SHARDSET_E2E=1 SHARDSET_BIN_DIR="$BIN_DIR" SHARDSET_PREVIOUS_CHART SHARDSET_PREVIOUS_TAG
cd "$REPO_DIR"
log "the upgrade scenario on $CLUSTER_NAME (previous release $SHARDSET_PREVIOUS_TAG)"
cargo test -p shardset-e2e --test upgrade_chart -- --ignored --nocapture
