#!/usr/bin/env bash
# Builds the Go binaries of the test cluster from the modules under tests/cluster/go/ (our go.mod and
# go.sum pin every version), each set into $CACHE_DIR/go/<name>-<version>-<inputs hash>/.
# A set is built only when that directory is missing; it appears atomically (built aside, then
# renamed), so a run killed mid-way leaves no half-built cache behind.
#
#   build-go.sh            build every set (prints nothing on stdout)
#   build-go.sh tests      build only what the in-process tests run (nats-server; `make unit` does this)
#   build-go.sh dir NAME   print the directory of set NAME (building it first if needed)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

K8S_LDFLAGS="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=$(cut -d. -f1 <<<"${K8S_VERSION#v}") \
 -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=$(cut -d. -f1 <<<"${K8S_VERSION#v}") \
 -X k8s.io/client-go/pkg/version.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"

# set name -> "version|packages|extra env|ldflags|tags"
declare -A SETS=(
  [kind]="$KIND_VERSION|sigs.k8s.io/kind||-s -w|"
  [kubernetes]="$K8S_VERSION|k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy||$K8S_LDFLAGS|"
  [containerd]="$CONTAINERD_VERSION|github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2||-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION|no_aufs no_zfs no_btrfs no_devmapper"
  [crictl]="$CRICTL_VERSION|sigs.k8s.io/cri-tools/cmd/crictl||-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION|"
  [etcd]="$ETCD_VERSION|go.etcd.io/etcd/server/v3||-s -w|"
  [coredns]="$COREDNS_VERSION|github.com/coredns/coredns||-s -w|"
  [local-path]="$LOCAL_PATH_VERSION|github.com/rancher/local-path-provisioner||-s -w|"
  [helm]="$HELM_VERSION|helm.sh/helm/v4/cmd/helm||-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION|"
  # remove_all_sd: Prometheus's own build tag that leaves out the cloud service discoveries (AWS,
  # Azure, GCE, ...); `promtool check/test rules` needs none of them.
  [promtool]="$PROMTOOL_VERSION|github.com/prometheus/prometheus/cmd/promtool||-s -w -X github.com/prometheus/common/version.Version=$PROMTOOL_VERSION|remove_all_sd"
  [nats-server]="$NATS_SERVER_VERSION|github.com/nats-io/nats-server/v2||-s -w|"
)
ORDER=(kind helm promtool kubernetes containerd crictl etcd coredns local-path)
# What the in-process tests (`make unit`) start: needs no cluster, so it is built on its own.
TEST_SETS=(nats-server)

set_dir() {
  local name=$1 spec=${SETS[$1]} mod="$CLUSTER_DIR/go/$1"
  IFS='|' read -r version _ _ _ _ <<<"$spec"
  echo "$CACHE_DIR/go/$name-$version-$(hash_inputs "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" "$spec" "$(go env GOVERSION)")"
}

build_set() {
  local name=$1 out tmp version pkgs env ldflags tags
  out=$(set_dir "$name")
  [[ -d $out ]] && return 0
  IFS='|' read -r version pkgs env ldflags tags <<<"${SETS[$name]}"
  mkdir -p "$CACHE_DIR/go"
  tmp=$(mktemp -d "$out.tmp.XXXX")
  log "building $name $version (cached afterwards in $out)"
  local start=$SECONDS
  # Static binaries: they also run in FROM-scratch images.
  # shellcheck disable=SC2086
  (cd "$CLUSTER_DIR/go/$name" && env CGO_ENABLED=0 $env go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$tmp/" $pkgs) \
    || { rm -rf "$tmp"; die "go build of $name failed"; }
  # etcd's main package is named after its module directory.
  if [[ $name == etcd ]]; then mv "$tmp"/server "$tmp/etcd" 2>/dev/null || mv "$tmp"/v3 "$tmp/etcd"; fi
  # Another clone (make unit in a second worktree) may have finished the same set meanwhile:
  # identical inputs, so theirs is as good as ours.
  mv -T "$tmp" "$out" 2>/dev/null || { [[ -d $out ]] && rm -rf "$tmp"; } || die "could not move $tmp to $out"
  log "built $name in $((SECONDS - start)) s"
}

# Old sets of a name (other versions or inputs) are removed once the new one is in place.
prune_set() {
  local name=$1 keep d
  keep=$(set_dir "$name")
  for d in "$CACHE_DIR/go/$name"-v*; do
    [[ -e $d && $d != "$keep" ]] && rm -rf "$d"
  done
  return 0
}

link_bin() { # put the client tools on the PATH that `make cluster` prints (promtool: for the chart's rules)
  mkdir -p "$BIN_DIR"
  ln -sfn "$(set_dir kind)/kind" "$BIN_DIR/kind"
  ln -sfn "$(set_dir kubernetes)/kubectl" "$BIN_DIR/kubectl"
  ln -sfn "$(set_dir helm)/helm" "$BIN_DIR/helm"
  ln -sfn "$(set_dir promtool)/promtool" "$BIN_DIR/promtool"
}

link_test_bin() { # where the test fixtures look first (tests/nats-server)
  mkdir -p "$BIN_DIR"
  ln -sfn "$(set_dir nats-server)/nats-server" "$BIN_DIR/nats-server"
}

command -v go >/dev/null || die "Go is needed to build the cluster's and the tests' binaries (kind, Kubernetes, nats-server, ...)"
case "${1:-all}" in
  dir) build_set "$2"; set_dir "$2" ;;
  tests)
    for n in "${TEST_SETS[@]}"; do build_set "$n"; prune_set "$n"; done
    link_test_bin
    ;;
  all)
    for n in "${ORDER[@]}" "${TEST_SETS[@]}"; do build_set "$n"; prune_set "$n"; done
    link_bin
    link_test_bin
    ;;
  *) die "usage: $0 [all | tests | dir NAME]" ;;
esac
