#!/usr/bin/env bash
# `make cluster`: brings the kind test cluster up, idempotently, and prints on stdout only
#   export KUBECONFIG=...
#   export PATH=<bin dir>:$PATH
# so that `eval "$(make -s cluster)"` sets up a shell. Everything else goes to stderr.
#
# Steps (each skipped when already done): Debian packages, Docker, the Go binaries, the node image,
# the cluster (1 control plane + SHARDSET_CLUSTER_WORKERS workers, default 2), then it waits until
# every node is Ready and CoreDNS answers a pod. A cluster left half-made by a killed run, or whose
# nodes were left stopped, is repaired or made anew.
#
# Environment:
#   SHARDSET_CLUSTER_NAME     cluster name (default shardset)
#   SHARDSET_CLUSTER_WORKERS  number of workers (default 2; 0 = a single node)
#   SHARDSET_NODE_IMAGE       node image to use instead of building one; "published" pulls
#                             kind's published image (needs a registry)
#   SHARDSET_CACHE_DIR        build cache (default ~/.cache/shardset)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
START=$SECONDS

"$CLUSTER_DIR/deps.sh"
"$CLUSTER_DIR/docker.sh" up
"$CLUSTER_DIR/build-go.sh"
export PATH="$BIN_DIR:$PATH"
mkdir -p "$STATE_DIR"

node_image() {
  case "${SHARDSET_NODE_IMAGE:-}" in
    "") if have_image "$KIND_PUBLISHED_NODE_IMAGE"; then echo "$KIND_PUBLISHED_NODE_IMAGE"; else "$CLUSTER_DIR/build-node-image.sh"; fi ;;
    published) docker pull "$KIND_PUBLISHED_NODE_IMAGE" >&2 && echo "$KIND_PUBLISHED_NODE_IMAGE" ;;
    *) echo "$SHARDSET_NODE_IMAGE" ;;
  esac
}

write_config() {
  local f="$STATE_DIR/kind-config-$CLUSTER_NAME.yaml" i
  {
    cat <<'EOF'
# Written by tests/cluster/up.sh.
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
EOF
    for ((i = 0; i < CLUSTER_WORKERS; i++)); do echo "- role: worker"; done
    cat <<'EOF'
# Hosts whose capability bounding set lacks CAP_SYS_RESOURCE: without this every pod sandbox dies
# ("can't get final child's PID from pipe"). Harmless elsewhere.
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true
# cgroup v1 hosts: the kubelet refuses to start on them unless told otherwise.
kubeadmConfigPatches:
- |
  kind: KubeletConfiguration
  failCgroupV1: false
EOF
  } >"$f"
  echo "$f"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; }
node_containers() { docker ps -a --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME" --format '{{.Names}}'; }
want_nodes() { echo $((1 + CLUSTER_WORKERS)); }

# Ready within $1 seconds? (watch-based wait on the Node conditions)
nodes_ready() {
  local n
  n=$(kubectl get nodes -o name 2>/dev/null | wc -l)
  [[ $n -eq $(want_nodes) ]] || return 1
  kubectl wait --for=condition=Ready nodes --all --timeout="${1}s" >/dev/null 2>&1
}

dns_answers() {
  local pod=shardset-dns-check-$RANDOM image
  image=$(kubectl -n kube-system get ds bridge-cni -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)
  # kind's published image has no bridge-cni; its kindnetd image has no shell, but every kind node
  # image has our or kind's tools; fall back to the local-path helper image.
  [[ -n $image ]] || image=$(kubectl -n local-path-storage get deploy local-path-provisioner \
    -o jsonpath='{.spec.template.spec.containers[0].command}' | jq -r '.[index("--helper-image") + 1]')
  kubectl -n default run "$pod" --image="$image" --image-pull-policy=IfNotPresent --restart=Never \
    --command -- sh -c 'for i in $(seq 60); do getent hosts kubernetes.default.svc.cluster.local && exit 0; sleep 1; done; exit 1' >/dev/null
  local ok=1
  if kubectl -n default wait --for=jsonpath='{.status.phase}'=Succeeded pod/"$pod" --timeout=120s >/dev/null 2>&1; then
    ok=0
  else
    kubectl -n default logs "$pod" >&2 2>/dev/null || true
  fi
  kubectl -n default delete pod "$pod" --wait=false >/dev/null 2>&1 || true
  return $ok
}

healthy() {
  kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 || return 1
  export KUBECONFIG="$KUBECONFIG_FILE"
  kubectl get --raw /readyz >/dev/null 2>&1 || return 1
  nodes_ready "$1"
}

repair_or_delete() {
  # Nodes stopped (a node-loss test, Docker restarted): start them and give them time to come back.
  local stopped
  stopped=$(docker ps -a --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME" --filter status=exited --filter status=created --format '{{.Names}}')
  if [[ -n $stopped ]]; then
    log "starting stopped nodes: $stopped"
    # shellcheck disable=SC2086
    docker start $stopped >/dev/null || true
    for _ in $(seq 60); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 2; done
    healthy 180 && return 0
  fi
  log "cluster $CLUSTER_NAME is not healthy (a killed earlier run?): deleting it to make it anew"
  kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" >&2 || true
}

if cluster_exists || [[ -n $(node_containers) ]]; then
  if healthy 20; then
    log "cluster $CLUSTER_NAME is up"
  else
    repair_or_delete
  fi
fi

if ! cluster_exists || ! healthy 1; then
  # Containers with our label but no cluster kind knows of (a run killed inside `kind create`).
  stale=$(node_containers)
  if [[ -n $stale ]]; then
    log "removing stale node containers: $stale"
    # shellcheck disable=SC2086
    docker rm -f $stale >/dev/null
  fi
  image=$(node_image)
  config=$(write_config)
  log "creating cluster $CLUSTER_NAME: 1 control plane + $CLUSTER_WORKERS workers from $image"
  t=$SECONDS
  kind create cluster --name "$CLUSTER_NAME" --image "$image" --config "$config" \
    --kubeconfig "$KUBECONFIG_FILE" --wait 0s >&2
  export KUBECONFIG="$KUBECONFIG_FILE"
  nodes_ready 300 || { kubectl get nodes -o wide >&2 || true; die "nodes not Ready after 300 s"; }
  log "all $(want_nodes) nodes Ready $((SECONDS - t)) s after kind create started"
fi

export KUBECONFIG="$KUBECONFIG_FILE"
kubectl -n kube-system rollout status deploy/coredns --timeout=180s >/dev/null \
  || die "CoreDNS did not become available"
dns_answers || die "CoreDNS does not answer a pod's lookup of kubernetes.default.svc.cluster.local"
log "cluster $CLUSTER_NAME ready in $((SECONDS - START)) s: $(want_nodes) nodes Ready, CoreDNS answers"

echo "export KUBECONFIG=$KUBECONFIG_FILE"
echo "export PATH=$BIN_DIR:\$PATH"
