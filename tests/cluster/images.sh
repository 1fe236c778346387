#!/usr/bin/env bash
# `make images`: builds the project's images and, when the cluster is up, loads them into it with
# `kind load docker-image` (as a user would). Rust binaries are static (musl) and built once, in one
# cargo invocation; each image is a FROM-scratch Dockerfile in the repo, given a build context that
# holds its binary. An image whose binary does not build is reported and skipped; the script then
# exits non-zero after building and loading the others.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$BIN_DIR:$PATH"

TARGET=x86_64-unknown-linux-musl
TAG="${SHARDSET_IMAGE_TAG:-dev}"
PROJECT_LABEL=io.shardset.image
# The one list: image | Dockerfile | binary (cargo --bin; empty: not a Rust binary).
IMAGE_LIST=(
  "shardset/shardset-operator:$TAG|operator/Dockerfile|shardset-operator"
  "shardset/shard-worker:$TAG|shard-worker/Dockerfile|shard-worker"
  "shardset/fake-discord:$TAG|tests/fake-discord/Dockerfile|fake-discord"
  "shardset/cluster-probe:$TAG|tests/cluster/probe/Dockerfile|cluster-probe"
  "shardset/demo-handler:$TAG|handlers/demo/Dockerfile|demo-handler"
  "shardset/redis:$TAG|tests/cluster/redis/Dockerfile|"
  "shardset/nats:$TAG|tests/cluster/nats/Dockerfile|"
)

cd "$REPO_DIR"
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
OUT="$TARGET_DIR/$TARGET/release"
STAGE="$TARGET_DIR/images"

bins=()
for e in "${IMAGE_LIST[@]}"; do IFS='|' read -r _ _ b <<<"$e"; [[ -n $b ]] && bins+=("--bin" "$b"); done
failed=()
log "cargo build --release --target $TARGET ${bins[*]}"
if ! cargo build --release --target "$TARGET" "${bins[@]}" >&2; then
  # Find which ones do build (cargo stops at the first error).
  for e in "${IMAGE_LIST[@]}"; do
    IFS='|' read -r _ _ b <<<"$e"
    [[ -z $b ]] && continue
    cargo build --release --target "$TARGET" --bin "$b" >&2 || failed+=("$b")
  done
fi

# redis-server, and coreutils' cp: the chart's Sentinel pods copy their config into a writable
# emptyDir with it (Sentinel rewrites its config file and will not start on a read-only one).
stage_redis() {
  local ctx=$1 lib program
  command -v redis-server >/dev/null || { log "redis-server is not installed (deps.sh installs it)"; return 1; }
  mkdir -p "$ctx/rootfs/usr/bin" "$ctx/data"
  for program in redis-server cp; do
    cp "$(readlink -f "$(command -v "$program")")" "$ctx/rootfs/usr/bin/$program"
    for lib in $(ldd "$(command -v "$program")" | grep -oE '/[^ ]+'); do
      mkdir -p "$ctx/rootfs$(dirname "$lib")"
      cp -L "$lib" "$ctx/rootfs$lib"
    done
  done
}

# The static nats-server that build-go.sh builds from its Go module (`make cluster` built it).
stage_nats() {
  local ctx=$1 dir
  dir=$("$CLUSTER_DIR/build-go.sh" dir nats-server) || return 1
  cp "$dir/nats-server" "$ctx/"
  mkdir -p "$ctx/data"
}

# Clones on one machine share Docker's image names (`shardset/*:dev`): one clone at a time tags
# and loads, so a cluster never gets another clone's build.
exec 9>"${TMPDIR:-/tmp}/shardset-images.lock"
flock 9
built=()
for e in "${IMAGE_LIST[@]}"; do
  IFS='|' read -r image dockerfile bin <<<"$e"
  [[ -n $bin && " ${failed[*]} " == *" $bin "* ]] && continue
  ctx="$STAGE/${image//[\/:]/_}"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  if [[ -n $bin ]]; then
    cp "$OUT/$bin" "$ctx/"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  else
    case $image in
      shardset/redis:*) stage_redis "$ctx" ;;
      shardset/nats:*) stage_nats "$ctx" ;;
    esac || { failed+=("$image"); continue; }
  fi
  if DOCKER_BUILDKIT=0 docker build -q --label "$PROJECT_LABEL=$TAG" -f "$dockerfile" -t "$image" "$ctx" >/dev/null 2>"$ctx.err"; then
    built+=("$image")
    log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))"
  else
    cat "$ctx.err" >&2
    failed+=("$image")
  fi
done

# Earlier builds of these images, now untagged.
docker image prune -f --filter "label=$PROJECT_LABEL" >/dev/null 2>&1 || true

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME" && ((${#built[@]})); then
  t=$SECONDS
  kind load docker-image --name "$CLUSTER_NAME" "${built[@]}" >&2
  log "loaded ${#built[@]} images into cluster $CLUSTER_NAME in $((SECONDS - t)) s"
else
  log "cluster $CLUSTER_NAME is not up: images built, not loaded (make cluster, then make images)"
fi
if ((${#failed[@]})); then
  log "NOT built (their binaries or Dockerfiles failed): ${failed[*]}"
  exit 1
fi
