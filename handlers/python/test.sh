#!/usr/bin/env bash
# `make unit-python`: the Python library's tests and its demo handler's (pytest) against a real
# nats-server (built by `make test-tools`), with the Rust library's recorder example as the other
# replica of the interop tests and the fake Discord as the REST API the demo answers through.
# The venv holds what requirements-test.txt pins (the library's requirements.txt: nats-py,
# prometheus-client; and pytest); it is cached in ~/.cache/shardset/python/venv-<hash of both
# requirement files and the Python version>, built aside and renamed into place, so an
# interrupted install leaves nothing half-made.
set -euo pipefail
cd "$(dirname "$0")"
cache="${SHARDSET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shardset}"
python=${PYTHON:-python3}
key=$( { cat requirements.txt requirements-test.txt; "$python" --version; } | sha256sum | cut -c1-12)
venv="$cache/python/venv-$key"
if [[ ! -f $venv/.complete ]]; then
  mkdir -p "$cache/python"
  tmp=$(mktemp -d "$venv.tmp.XXXX")
  echo "[unit-python] creating $venv (nats-py, prometheus-client, pytest)" >&2
  "$python" -m venv "$tmp"
  "$tmp/bin/python" -m pip install -q --disable-pip-version-check -r requirements-test.txt
  touch "$tmp/.complete"
  # Another clone may have finished the same venv meanwhile: identical, keep theirs.
  mv -T "$tmp" "$venv" 2>/dev/null || rm -rf "$tmp"
  # Older venvs (other requirements or Python versions) go.
  for old in "$cache/python"/venv-*; do
    [[ $old == "$venv" || $old == *.tmp.* ]] || rm -rf "$old"
  done
fi
# The other replica of the interop tests, the fake Discord the demo handler answers, and the
# worker the commands are sent to.
cargo build -q -p shardset-handler --example recorder
cargo build -q -p fake-discord --bin fake-discord
cargo build -q -p shard-worker --bin shard-worker
# No bytecode or pytest cache in the work tree; `python -m` works from a moved venv.
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q tests "$@"
