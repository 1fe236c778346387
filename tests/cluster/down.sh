#!/usr/bin/env bash
# `make cluster-down`: deletes the cluster (SHARDSET_CLUSTER_NAME, default shardset) and its
# kubeconfig, removes a node-image build container a killed run may have left, and, once no kind
# cluster is left on it, stops the dockerd that the harness started (by its recorded PID; a Docker
# that was already running is left alone).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$BIN_DIR:$PATH"

if docker info >/dev/null 2>&1; then
  if command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "deleting cluster $CLUSTER_NAME"
    kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" >&2
  fi
  # Node containers kind no longer knows of (a run killed inside `kind create`).
  stale=$(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME")
  # shellcheck disable=SC2086
  [[ -n $stale ]] && docker rm -f $stale >/dev/null
  docker rm -f shardset-node-build >/dev/null 2>&1 || true
  others=$(docker ps -aq --filter "label=io.x-k8s.kind.cluster")
else
  others=""
fi
rm -f "$KUBECONFIG_FILE" "$STATE_DIR/kind-config-$CLUSTER_NAME.yaml"
if [[ -z $others ]]; then
  "$CLUSTER_DIR/docker.sh" down
else
  log "other kind clusters still run on this Docker: leaving it up"
fi
log "cluster $CLUSTER_NAME is down"
