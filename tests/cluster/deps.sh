#!/usr/bin/env bash
# Installs the Debian packages the test cluster needs, only those missing (apt-get update only then).
#   docker.io      dockerd 20.10 (used only when no Docker answers; see docker.sh)
#   debootstrap    the Debian root filesystems of the node image
#   jq             the OCI runtime wrapper, the node image build
#   gcc libc6-dev  the static pause binary
#   musl-tools     static Rust binaries (ring needs musl-gcc) for our FROM-scratch images
#   redis-server   the Redis image is built from Debian's redis-server binary
#   procps iproute2 pgrep, ip
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=(docker.io debootstrap jq gcc libc6-dev musl-tools redis-server procps iproute2 ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  # policy-rc.d: installing docker.io must not try to start services (we start dockerd ourselves).
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v go >/dev/null || die "Go (1.26 or newer) is needed to build kind and Kubernetes: install it first"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  log "adding the Rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl >&2
fi
