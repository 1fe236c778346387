#!/usr/bin/env bash
# `make demo`: the main job on a fresh machine, with no token and no registry.
# Brings the kind cluster up, builds and loads the images, installs the operator chart (with its
# optional Redis) and the fake Discord chart, applies a sample ShardSet, waits until it is Ready,
# and prints what to look at. Idempotent: run it again to re-apply everything.
#
# Environment:
#   DEMO_NAMESPACE      where the fake Discord and the ShardSet go (default shardset-demo)
#   OPERATOR_NAMESPACE  where the operator and Redis go (default shardset-system)
#   DEMO_TIMEOUT        how long to wait for Ready (default 10m)
set -euo pipefail
REPO_DIR="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$REPO_DIR"
DEMO_NS="${DEMO_NAMESPACE:-shardset-demo}"
OP_NS="${OPERATOR_NAMESPACE:-shardset-system}"
TIMEOUT="${DEMO_TIMEOUT:-10m}"
say() { printf '\n\033[1m[demo] %s\033[0m\n' "$*" >&2; }

say "1/6 test cluster (make cluster)"
eval "$(tests/cluster/up.sh)"

say "2/6 images (make images: static binaries, FROM scratch, kind load)"
tests/cluster/images.sh

say "3/6 operator chart with its optional Redis, in $OP_NS (watching $DEMO_NS)"
# The demo's operator watches the demo namespace only, so that it never acts on the ShardSets of
# tests sharing this cluster; drop watchNamespace to watch every namespace.
kubectl create namespace "$DEMO_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm upgrade --install shardset-operator charts/shardset-operator \
  --namespace "$OP_NS" --create-namespace --set watchNamespace="$DEMO_NS" \
  --set redis.enabled=true --set redis.image.repository=shardset/redis --set redis.image.tag=dev \
  --set "trustedApiHosts={fake-discord.$DEMO_NS}" \
  --wait --timeout 5m
# Helm installs CRDs only on first install: apply the current one, as an upgrade would.
kubectl apply --server-side --force-conflicts -f crds/shardset.io_shardsets.yaml >/dev/null

say "4/6 fake Discord chart, in $DEMO_NS"
helm upgrade --install fake-discord charts/fake-discord \
  --namespace "$DEMO_NS" --create-namespace \
  --set maxConcurrency=4 --set guilds=4000 \
  --wait --timeout 5m

say "5/6 the sample ShardSet (tests/demo/shardset.yaml)"
sed -e "s/shardset-operator-redis.shardset-system/shardset-operator-redis.$OP_NS/" \
    -e "s/fake-discord.shardset-demo/fake-discord.$DEMO_NS/" tests/demo/shardset.yaml \
  | kubectl apply -n "$DEMO_NS" -f -

say "6/6 waiting until the ShardSet is Ready (timeout $TIMEOUT)"
if ! kubectl wait -n "$DEMO_NS" shardset/demo-bot --for=condition=Ready --timeout="$TIMEOUT"; then
  kubectl get -n "$DEMO_NS" shardsets,pods -o wide >&2 || true
  kubectl describe -n "$DEMO_NS" shardset/demo-bot >&2 || true
  exit 1
fi
kubectl get -n "$DEMO_NS" shardsets
kubectl get -n "$DEMO_NS" pods -l shardset.io/shardset=demo-bot -o wide

cat <<MSG

The demo bot's 8 shards are connected to the fake Discord, 2 per pod. To look around:

  eval "\$(make -s cluster)"                       # kubectl, helm, kind and the KUBECONFIG
  kubectl get shardsets -n $DEMO_NS                # Shards, Ready, Pods, Guilds
  kubectl describe shardset demo-bot -n $DEMO_NS   # conditions and Events
  kubectl scale shardset demo-bot -n $DEMO_NS --replicas=12   # reshard

  # the fake Discord's control API: every Identify, violation and session
  kubectl port-forward -n $DEMO_NS svc/fake-discord 8080 &
  curl -s localhost:8080/control/identifies; curl -s localhost:8080/control/violations

  # the operator's metrics, from the leader (the replica holding the Lease; the standby's are idle)
  kubectl port-forward -n $OP_NS pod/\$(kubectl get lease -n $OP_NS shardset-operator -o jsonpath='{.spec.holderIdentity}') 8081:8080 &
  curl -s localhost:8081/metrics | grep shardset_operator

Remove it all with: make cluster-down
MSG
