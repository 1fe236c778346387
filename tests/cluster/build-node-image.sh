#!/usr/bin/env bash
# Builds the kind node image offline, doing what `kind build node-image` does (it cannot run here: it
# pulls etcd, CoreDNS, pause, CNI and storage images from registries):
#   1. two Debian rootfs made with debootstrap: "tools" (iptables & co, for kube-proxy, the CNI
#      DaemonSet and local-path's helper) and kind's "base" (systemd, containerd, runc, CNI plugins,
#      kind's images/base/files, the RUN steps of kind's images/base/Dockerfile);
#   2. the images kubeadm expects, under the exact names `kubeadm config images list` gives, plus
#      CoreDNS, local-path-provisioner and our CNI image; static binaries on FROM scratch where possible;
#   3. the node: base + kubeadm/kubelet/kubectl in /usr/bin, /kind/version, /kind/manifests, and every
#      image above imported into the node's containerd (pinned), committed with kind's entrypoint.
# Every image carries a label with the hash of its inputs and is rebuilt only when that hash changes;
# Docker's image store is the cache. Prints the node image's name on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NODE_REPO=localhost/shardset/kind-node
TOOLS_IMAGE=localhost/shardset/node-tools:$DEBIAN_SUITE   # kube-proxy's base, CNI DaemonSet, local-path helper
BASE_IMAGE=localhost/shardset/kind-base:$DEBIAN_SUITE
LOCAL_PATH_IMAGE=localhost/shardset/local-path-provisioner:$LOCAL_PATH_VERSION
CNI_IMAGE=localhost/shardset/bridge-cni:1
# Bump to force a rebuild of everything when this script's logic changes.
RECIPE=3
# Bump for a change in how the node image alone is assembled.
NODE_RECIPE=2

TOOLS_PACKAGES="iptables,nftables,conntrack,ipset,kmod,iproute2"
BASE_PACKAGES="systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,fuse-overlayfs,e2fsprogs,bash,ca-certificates,curl,jq,procps,runc,containernetworking-plugins"

GO_BUILD="$CLUSTER_DIR/build-go.sh"
KIND_SRC=""   # kind's module source (images/base/files, the storage manifest), set in main

mirror() {
  # The Debian mirror apt already uses on this machine (deb822 or one-line sources), else the default.
  local m
  m=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
  [[ -z $m ]] && m=$(grep -hoE '^deb +(\[[^]]*\] +)?[^ ]+' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $NF}')
  echo "${m:-http://deb.debian.org/debian}"
}

# docker_build IMAGE INPUTS_HASH CONTEXT_DIR: build CONTEXT_DIR/Dockerfile, labelled with the hash.
docker_build() {
  local image=$1 hash=$2 ctx=$3
  printf '\nLABEL %s=%s\n' "$INPUTS_LABEL" "$hash" >>"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null 2>"$ctx/build.err" \
    || { cat "$ctx/build.err" >&2; die "docker build of $image failed"; }
}

fresh() { [[ $(image_inputs "$1") == "$2" ]]; }

# rootfs DIR PACKAGES: a slim Debian minbase with PACKAGES (comma-separated), no recommends.
rootfs() {
  local dir=$1 pkgs=$2
  log "debootstrap $DEBIAN_SUITE with $pkgs (from $(mirror))"
  debootstrap --variant=minbase --include="$pkgs" "$DEBIAN_SUITE" "$dir" "$(mirror)" >"$dir.log" 2>&1 \
    || { tail -20 "$dir.log" >&2; die "debootstrap failed (log: $dir.log)"; }
  slim "$dir"
}

slim() {
  local dir=$1
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/var/cache/debconf/*-old \
    "$dir"/var/log/* "$dir"/tmp/* "$dir"/var/tmp/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
    "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/usr/share/doc-base/* "$dir"/usr/share/lintian/*
}

# import_rootfs DIR IMAGE HASH [DOCKERFILE LINES...]: docker import DIR, then add config and the label.
import_rootfs() {
  local dir=$1 image=$2 hash=$3; shift 3
  local ctx raw="$image-import"
  ctx=$(mktemp -d)
  tar -C "$dir" -c . | docker import - "$raw" >/dev/null
  printf 'FROM %s\n' "$raw" >"$ctx/Dockerfile"
  printf '%s\n' "$@" >>"$ctx/Dockerfile"
  docker_build "$image" "$hash" "$ctx"
  docker rmi "$raw" >/dev/null
  rm -rf "$ctx"
}

build_tools() {
  local hash
  hash=$(hash_inputs "tools $RECIPE $DEBIAN_SUITE $TOOLS_PACKAGES")
  fresh "$TOOLS_IMAGE" "$hash" && return 0
  local w
  w=$(mktemp -d)
  rootfs "$w/rootfs" "$TOOLS_PACKAGES"
  import_rootfs "$w/rootfs" "$TOOLS_IMAGE" "$hash" 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'CMD ["/bin/sh"]'
  rm -rf "$w"
  log "built $TOOLS_IMAGE"
}

build_base() {
  local containerd crictl hash
  containerd=$("$GO_BUILD" dir containerd)
  crictl=$("$GO_BUILD" dir crictl)
  hash=$(hash_inputs "base $RECIPE $DEBIAN_SUITE $BASE_PACKAGES $containerd $crictl $KIND_SRC")
  fresh "$BASE_IMAGE" "$hash" && return 0
  local w r f
  w=$(mktemp -d)
  r="$w/rootfs"
  rootfs "$r" "$BASE_PACKAGES"
  log "kind base: kind's files, containerd $CONTAINERD_VERSION, crictl, CNI plugins, RUN steps"
  # The COPY steps of kind's images/base/Dockerfile, with its modes.
  local files="$KIND_SRC/images/base/files"
  install -m 0755 "$files"/usr/local/bin/* "$r/usr/local/bin/"
  mkdir -p "$r/kind/bin" "$r/LICENSES" "$r/etc/containerd" "$r/etc/default" "$r/etc/sysctl.d" \
    "$r/etc/systemd/system/kubelet.service.d"
  for f in "$files"/kind/*; do [[ -f $f ]] && install -m 0644 "$f" "$r/kind/"; done
  install -m 0755 "$files"/kind/bin/* "$r/kind/bin/"
  install -m 0644 "$files"/LICENSES/* "$r/LICENSES/"
  for f in "$files"/etc/*; do [[ -f $f ]] && install -m 0644 "$f" "$r/etc/"; done
  install -m 0644 "$files"/etc/containerd/* "$r/etc/containerd/"
  install -m 0644 "$files"/etc/default/* "$r/etc/default/"
  install -m 0644 "$files"/etc/sysctl.d/* "$r/etc/sysctl.d/"
  for f in "$files"/etc/systemd/system/*; do [[ -f $f ]] && install -m 0644 "$f" "$r/etc/systemd/system/"; done
  install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
  chmod 755 "$r/kind" "$r/kind/bin"
  install -m 0755 "$containerd"/{containerd,ctr,containerd-shim-runc-v2} "$crictl/crictl" "$r/usr/local/bin/"
  # CNI plugins where kind's containerd looks for them (Debian installs them in /usr/lib/cni).
  mkdir -p "$r/opt/cni/bin"
  cp -a "$r"/usr/lib/cni/. "$r/opt/cni/bin/"
  # The RUN steps.
  find "$r/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
    "$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
    "$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$r/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$r/sbin/init"
  chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  chroot "$r" systemctl mask systemd-binfmt.service >/dev/null 2>&1
  mkdir -p "$r/etc/kubernetes/manifests"
  "$containerd/ctr" oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' >"$r/etc/containerd/cri-base.json"
  # Docker 20.10 refuses `import --change STOPSIGNAL`: set it in a build on top of the import.
  import_rootfs "$r" "$BASE_IMAGE" "$hash" 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
    'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]'
  rm -rf "$w"
  log "built $BASE_IMAGE"
}

# scratch_image IMAGE HASH ENTRYPOINT_JSON FILE...: FROM scratch with the files in /usr/local/bin.
scratch_image() {
  local image=$1 hash=$2 entry=$3; shift 3
  fresh "$image" "$hash" && return 0
  local ctx f
  ctx=$(mktemp -d)
  for f in "$@"; do cp "$f" "$ctx/"; done
  {
    echo "FROM scratch"
    for f in "$@"; do echo "COPY $(basename "$f") /usr/local/bin/"; done
    echo "ENV PATH=/usr/local/bin:/usr/bin:/bin"
    echo "ENTRYPOINT $entry"
  } >"$ctx/Dockerfile"
  docker_build "$image" "$hash" "$ctx"
  rm -rf "$ctx"
  log "built $image"
}

# The images the node carries; sets IMAGES (names) as it goes.
IMAGES=()
build_component_images() {
  local k8s etcd coredns lp img tag hash
  k8s=$("$GO_BUILD" dir kubernetes)
  etcd=$("$GO_BUILD" dir etcd)
  coredns=$("$GO_BUILD" dir coredns)
  lp=$("$GO_BUILD" dir local-path)
  local tools_id
  tools_id=$(docker image inspect -f '{{.Id}}' "$TOOLS_IMAGE")

  # What kubeadm will ask for, checked against what we build (a version bump must update lib.sh).
  local want
  want=$("$k8s/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
  local expected="registry.k8s.io/kube-apiserver:$K8S_VERSION
registry.k8s.io/kube-controller-manager:$K8S_VERSION
registry.k8s.io/kube-scheduler:$K8S_VERSION
registry.k8s.io/kube-proxy:$K8S_VERSION
registry.k8s.io/coredns/coredns:$COREDNS_IMAGE_TAG
registry.k8s.io/pause:${PAUSE_TAGS%% *}
registry.k8s.io/etcd:$ETCD_IMAGE_TAG"
  [[ $want == "$expected" ]] || die "kubeadm $K8S_VERSION asks for other images than lib.sh says:
$want"

  for img in kube-apiserver kube-controller-manager kube-scheduler; do
    hash=$(hash_inputs "$RECIPE" "$k8s/$img")
    scratch_image "registry.k8s.io/$img:$K8S_VERSION" "$hash" "[\"/usr/local/bin/$img\"]" "$k8s/$img"
    IMAGES+=("registry.k8s.io/$img:$K8S_VERSION")
  done
  hash=$(hash_inputs "$RECIPE" "$etcd/etcd")
  scratch_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "$hash" '["/usr/local/bin/etcd"]' "$etcd/etcd"
  IMAGES+=("registry.k8s.io/etcd:$ETCD_IMAGE_TAG")

  # kube-proxy runs iptables: it needs the tools base.
  hash=$(hash_inputs "$RECIPE" "$k8s/kube-proxy" "$tools_id")
  if ! fresh "registry.k8s.io/kube-proxy:$K8S_VERSION" "$hash"; then
    local ctx
    ctx=$(mktemp -d)
    cp "$k8s/kube-proxy" "$ctx/"
    printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' "$TOOLS_IMAGE" >"$ctx/Dockerfile"
    docker_build "registry.k8s.io/kube-proxy:$K8S_VERSION" "$hash" "$ctx"
    rm -rf "$ctx"
    log "built registry.k8s.io/kube-proxy:$K8S_VERSION"
  fi
  IMAGES+=("registry.k8s.io/kube-proxy:$K8S_VERSION")

  # CoreDNS: kubeadm's Deployment runs the image's entrypoint with -conf.
  hash=$(hash_inputs "$RECIPE" "$coredns/coredns")
  if ! fresh "registry.k8s.io/coredns/coredns:$COREDNS_IMAGE_TAG" "$hash"; then
    local ctx
    ctx=$(mktemp -d)
    cp "$coredns/coredns" "$ctx/"
    printf 'FROM scratch\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n' >"$ctx/Dockerfile"
    docker_build "registry.k8s.io/coredns/coredns:$COREDNS_IMAGE_TAG" "$hash" "$ctx"
    rm -rf "$ctx"
    log "built registry.k8s.io/coredns/coredns:$COREDNS_IMAGE_TAG (CoreDNS $COREDNS_VERSION)"
  fi
  IMAGES+=("registry.k8s.io/coredns/coredns:$COREDNS_IMAGE_TAG")

  # pause, from the C source in the Kubernetes module.
  local pause_src pause_dir
  pause_src=$(cd "$CLUSTER_DIR/go/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  hash=$(hash_inputs "$RECIPE" "$pause_src")
  tag=${PAUSE_TAGS%% *}
  if ! fresh "registry.k8s.io/pause:$tag" "$hash"; then
    pause_dir=$(mktemp -d)
    gcc -Os -static -DVERSION="$tag" -o "$pause_dir/pause" "$pause_src"
    strip "$pause_dir/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$pause_dir/Dockerfile"
    docker_build "registry.k8s.io/pause:$tag" "$hash" "$pause_dir"
    rm -rf "$pause_dir"
    log "built registry.k8s.io/pause:$tag"
  fi
  for tag in $PAUSE_TAGS; do
    docker tag "registry.k8s.io/pause:${PAUSE_TAGS%% *}" "registry.k8s.io/pause:$tag"
    IMAGES+=("registry.k8s.io/pause:$tag")
  done

  # local-path-provisioner (FROM scratch: static) and its helper (needs a shell: the tools image).
  hash=$(hash_inputs "$RECIPE" "$lp/local-path-provisioner")
  scratch_image "$LOCAL_PATH_IMAGE" "$hash" '["/usr/local/bin/local-path-provisioner"]' "$lp/local-path-provisioner"
  IMAGES+=("$LOCAL_PATH_IMAGE" "$TOOLS_IMAGE")
  # The bridge CNI DaemonSet runs the node's own `ip` and `kubectl` through chroot: the tools image again.
  docker tag "$TOOLS_IMAGE" "$CNI_IMAGE"
  IMAGES+=("$CNI_IMAGE")
}

# kind's default storage manifest, from kind's source, with our image names.
storage_manifest() {
  sed -n '/^const defaultStorageManifest = `/,/^`$/p' "$KIND_SRC/pkg/build/nodeimage/const_storage.go" \
    | sed '1d;$d' \
    | sed -e "s#\` + storageProvisionerImage + \`#$LOCAL_PATH_IMAGE#g" \
      -e "s#\` + storageHelperImage + \`#$TOOLS_IMAGE#g"
}

build_node() {
  local k8s base_id hash image images_ids img
  k8s=$("$GO_BUILD" dir kubernetes)
  base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
  for img in "${IMAGES[@]}"; do images_ids+="$img=$(docker image inspect -f '{{.Id}}' "$img") "; done
  hash=$(hash_inputs "node $RECIPE $NODE_RECIPE" "$base_id" "$k8s/kubeadm" "$k8s/kubelet" "$k8s/kubectl" "$images_ids" \
    "$CLUSTER_DIR/cni/bridge-cni.yaml" "$(storage_manifest)")
  image="$NODE_REPO:$K8S_VERSION"
  if fresh "$image" "$hash"; then echo "$image"; return 0; fi
  log "building node image $image"
  local c w
  w=$(mktemp -d)
  # A stale build container of a killed run would hold the name: remove it first.
  c="shardset-node-build"
  docker rm -f "$c" >/dev/null 2>&1 || true
  docker run -d --name "$c" --entrypoint sleep "$BASE_IMAGE" infinity >/dev/null
  for b in kubeadm kubelet kubectl; do docker cp "$k8s/$b" "$c:/usr/bin/$b"; done
  docker exec "$c" chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
  echo -n "$K8S_VERSION" >"$w/version"
  docker cp "$w/version" "$c:/kind/version"
  docker exec "$c" mkdir -p /kind/manifests
  docker cp "$CLUSTER_DIR/cni/bridge-cni.yaml" "$c:/kind/manifests/default-cni.yaml"
  storage_manifest >"$w/default-storage.yaml"
  docker cp "$w/default-storage.yaml" "$c:/kind/manifests/default-storage.yaml"
  # Import every image into the node's containerd, pinned (kubelet's GC leaves them alone), unpacked
  # later on first use, as kind's own build does; `docker save` layers are uncompressed tars, so
  # compress them (the node image's size roughly halves).
  docker exec -d "$c" sh -c 'containerd >/var/log/containerd-build.log 2>&1'
  local i
  for i in $(seq 30); do docker exec "$c" ctr version >/dev/null 2>&1 && break; sleep 1; done
  docker save "${IMAGES[@]}" | docker exec -i "$c" ctr -n k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests --compress-blobs - >/dev/null
  docker exec "$c" sh -c 'ctr -n k8s.io images ls -q' | sort >"$w/imported"
  for img in "${IMAGES[@]}"; do
    grep -qxF "$img" "$w/imported" || grep -qxF "docker.io/$img" "$w/imported" \
      || die "image $img missing from the node's containerd after import"
  done
  docker exec "$c" sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done; rm -f /var/log/containerd-build.log'
  docker stop -t 1 "$c" >/dev/null
  local old
  old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  docker commit \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
    --change "LABEL $INPUTS_LABEL=$hash" \
    "$c" "$image" >/dev/null
  docker rm -f "$c" >/dev/null
  # The image it replaces, unless a cluster still runs on it (then Docker refuses: fine), and
  # earlier ones left untagged that no container uses any more.
  [[ -n $old ]] && docker rmi "$old" >/dev/null 2>&1 || true
  docker image prune -f --filter "label=$INPUTS_LABEL" >/dev/null 2>&1 || true
  rm -rf "$w"
  log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
  echo "$image"
}

main() {
  command -v debootstrap >/dev/null || die "debootstrap is missing (tests/cluster/deps.sh installs it)"
  KIND_SRC=$(cd "$CLUSTER_DIR/go/kind" && go mod download -json sigs.k8s.io/kind | jq -r .Dir)
  [[ -d $KIND_SRC/images/base/files ]] || die "kind's module source not found ($KIND_SRC)"
  case "${1:-node}" in
    tools) build_tools ;;
    base) build_base ;;
    node) build_tools; build_base; build_component_images; build_node ;;
    *) die "usage: $0 [node | tools | base]" ;;
  esac
}
main "$@"
