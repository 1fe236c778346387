#!/usr/bin/env bash
# The previous release for `make test-upgrade`: its operator chart and its images, built once from
# that release's own sources and cached, keyed by its commit.
#   previous-release.sh        build (first time) or reuse, then `kind load` the images into the
#                              cluster when it is up; prints the exports the upgrade test reads
#                              (SHARDSET_PREVIOUS_CHART, SHARDSET_PREVIOUS_TAG)
#
# The sources come from `git archive` of the release commit (no checkout of this clone changes);
# the images are built by that release's own tests/cluster/images.sh, tagged
# `shardset/*:$PREVIOUS_TAG` so that they never mix with `make images`' `:dev`. What is kept, in
# $CACHE_DIR/previous/<commit>/: `chart/` (its charts/shardset-operator) and `images.tar`
# (`docker save` of the images), so that a second run builds nothing, even after Docker's images
# were pruned or the cluster remade. The build's own cargo target dir is this clone's
# target/upgrade-from/ (sccache shares its compiled crates).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$BIN_DIR:$PATH"

# Chart 0.1.0, round 1's last commit (2026-11-25).
PREVIOUS_COMMIT=0e9bcf00850920b151d739003b0776a42d498a90
PREVIOUS_TAG=0.1.0
# What the upgrade test runs of it (that release's images.sh also builds its fake and probe: the
# test keeps today's fake, which stands for Discord and is no part of the upgrade).
PREVIOUS_IMAGES=(
  "shardset/shardset-operator:$PREVIOUS_TAG"
  "shardset/shard-worker:$PREVIOUS_TAG"
  "shardset/redis:$PREVIOUS_TAG"
)

KEEP="$CACHE_DIR/previous/$PREVIOUS_COMMIT"
WORK="$REPO_DIR/target/upgrade-from"

build() {
  local t=$SECONDS src="$WORK/src"
  log "previous release $PREVIOUS_TAG ($PREVIOUS_COMMIT): not cached, building its images"
  git -C "$REPO_DIR" cat-file -e "$PREVIOUS_COMMIT^{commit}" \
    || die "commit $PREVIOUS_COMMIT is not in this clone (fetch the full history)"
  rm -rf "$src"
  mkdir -p "$src"
  git -C "$REPO_DIR" archive "$PREVIOUS_COMMIT" | tar -x -C "$src"
  # Its own images.sh, its own target dir; a cluster name that never exists, so that it only builds.
  CARGO_TARGET_DIR="$WORK/target" SHARDSET_IMAGE_TAG="$PREVIOUS_TAG" \
    SHARDSET_CLUSTER_NAME=previous-release-build-only "$src/tests/cluster/images.sh"
  mkdir -p "$KEEP"
  rm -rf "$KEEP/chart.tmp"
  cp -r "$src/charts/shardset-operator" "$KEEP/chart.tmp"
  docker save -o "$KEEP/images.tar.tmp" "${PREVIOUS_IMAGES[@]}"
  # Complete only when both are in place: an interrupted build starts over.
  rm -rf "$KEEP/chart"
  mv "$KEEP/chart.tmp" "$KEEP/chart"
  mv "$KEEP/images.tar.tmp" "$KEEP/images.tar"
  log "previous release built and cached in $((SECONDS - t)) s ($(du -sh "$KEEP/images.tar" | cut -f1) of images)"
}

if [[ -f $KEEP/images.tar && -d $KEEP/chart ]]; then
  log "previous release $PREVIOUS_TAG: cached in $KEEP"
  for image in "${PREVIOUS_IMAGES[@]}"; do
    have_image "$image" && continue
    docker load -q -i "$KEEP/images.tar" >&2
    break
  done
else
  build
fi

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  t=$SECONDS
  kind load docker-image --name "$CLUSTER_NAME" "${PREVIOUS_IMAGES[@]}" >&2
  log "loaded the previous release's images into cluster $CLUSTER_NAME in $((SECONDS - t)) s"
else
  die "cluster $CLUSTER_NAME is not up (make cluster)"
fi
echo "export SHARDSET_PREVIOUS_CHART=$KEEP/chart SHARDSET_PREVIOUS_TAG=$PREVIOUS_TAG"
