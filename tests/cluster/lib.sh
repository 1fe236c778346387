# Shared by every script in tests/cluster/ (sourced, not run).
# One place for versions, cache and state locations, and small helpers.

# ---- versions (changing one rebuilds what depends on it: cache keys hash these) ----
KIND_VERSION=v0.33.0
K8S_VERSION=v1.36.3
CONTAINERD_VERSION=v2.3.4
CRICTL_VERSION=v1.37.0
ETCD_VERSION=v3.6.8
ETCD_IMAGE_TAG=3.6.8-0        # the tag kubeadm v1.36.3 asks for
COREDNS_VERSION=v1.15.0
COREDNS_IMAGE_TAG=v1.14.2     # kubeadm v1.36.3 asks for this tag; v1.15.0 serves it fine
PAUSE_TAGS="3.10.2 3.10"      # kubeadm's pause, and the node containerd's sandbox_image
LOCAL_PATH_VERSION=v0.0.30    # newest the Go proxy serves (kind pins v0.0.34)
HELM_VERSION=v4.3.1
PROMTOOL_VERSION=v0.316.0      # the Go module version of Prometheus 3.16.0 (v0.3XY.Z is 3.XY.Z)
NATS_SERVER_VERSION=v2.15.3   # the bus of the bot tier: the in-process tests' nats-server (tests/nats-server)
DEBIAN_SUITE=bookworm
# kind's published node image, used instead of building one where a registry answers.
KIND_PUBLISHED_NODE_IMAGE="kindest/node:${K8S_VERSION}"

# ---- locations ----
CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$CLUSTER_DIR/../.." && pwd)"
# Builds live outside the clone, keyed by version and by a hash of their inputs.
CACHE_DIR="${SHARDSET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shardset}"
BIN_DIR="$CACHE_DIR/bin"                     # kind, kubectl, helm: what `make cluster` puts on PATH;
                                             # nats-server: what tests/nats-server starts
# Machine-wide run state (the dockerd we started, its PID): /run is cleared on reboot, as PIDs are.
RUN_DIR="${SHARDSET_RUN_DIR:-/run/shardset-cluster}"
# Per-clone state: the kubeconfig (.cluster/ is git-ignored).
STATE_DIR="$REPO_DIR/.cluster"

CLUSTER_NAME="${SHARDSET_CLUSTER_NAME:-shardset}"
# 1 control plane + this many workers (SHARDSET_CLUSTER_WORKERS=0 for a single node).
CLUSTER_WORKERS="${SHARDSET_CLUSTER_WORKERS:-2}"
KUBECONFIG_FILE="${SHARDSET_KUBECONFIG:-$STATE_DIR/kubeconfig-$CLUSTER_NAME}"

export GOFLAGS="${GOFLAGS:--buildvcs=false}"

# ---- helpers ----
# Everything the harness says goes to stderr, so that `make -s cluster` prints only the exports.
log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# hash_inputs FILE|STRING...: a short, stable digest of files' contents and strings.
hash_inputs() {
  local x
  for x in "$@"; do
    if [[ -f $x ]]; then sha256sum <"$x"; else printf '%s\n' "$x"; fi
  done | sha256sum | cut -c1-12
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Label that marks images the harness built and the inputs hash they were built from.
INPUTS_LABEL=io.shardset.cluster.inputs
image_inputs() { docker image inspect -f "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$1" 2>/dev/null || true; }
