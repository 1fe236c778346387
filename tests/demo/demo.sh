#!/usr/bin/env bash
# `make demo`: the main job on a fresh machine, with no token and no registry.
# Brings the kind cluster up, builds and loads the images, installs the operator chart (with its
# optional Redis and NATS) and the fake Discord chart (with a steady message load), applies a
# sample ShardSet publishing to NATS, waits until it is Ready, starts the bot tier (the
# `demo-handler` Deployment answering every message through the bus), waits until the fake has
# seen replies, and prints what to look at. Idempotent: run it again to re-apply everything.
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

say "1/7 test cluster (make cluster)"
eval "$(tests/cluster/up.sh)"

say "2/7 images (make images: static binaries, FROM scratch, kind load)"
tests/cluster/images.sh

say "3/7 operator chart with its optional Redis and NATS, in $OP_NS (watching $DEMO_NS)"
# The demo's operator watches the demo namespace only, so that it never acts on the ShardSets of
# tests sharing this cluster; drop watchNamespace to watch every namespace.
kubectl create namespace "$DEMO_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm upgrade --install shardset-operator charts/shardset-operator \
  --namespace "$OP_NS" --create-namespace --set watchNamespace="$DEMO_NS" \
  --set redis.enabled=true --set redis.image.repository=shardset/redis --set redis.image.tag=dev \
  --set "trustedApiHosts={fake-discord.$DEMO_NS:8080}" \
  --set nats.enabled=true --set nats.image.repository=shardset/nats --set nats.image.tag=dev \
  --wait --timeout 5m
# Helm installs CRDs only on first install: apply the current one, as an upgrade would.
kubectl apply --server-side --force-conflicts -f crds/shardset.io_shardsets.yaml >/dev/null

say "4/7 fake Discord chart, in $DEMO_NS (20 messages/s over its guilds)"
helm upgrade --install fake-discord charts/fake-discord \
  --namespace "$DEMO_NS" --create-namespace \
  --set maxConcurrency=4 --set guilds=4000 --set loadRate=20 \
  --wait --timeout 5m

say "5/7 the sample ShardSet (tests/demo/shardset.yaml), publishing to NATS"
# The manifests name the default namespaces; other ones are substituted.
in_namespaces() {
  sed -e "s/shardset-operator-\(redis\|nats\).shardset-system/shardset-operator-\1.$OP_NS/" \
      -e "s/fake-discord.shardset-demo/fake-discord.$DEMO_NS/" \
      -e "s/shardset-shardset-demo-demo-bot/shardset-$DEMO_NS-demo-bot/" "$1"
}
# The chart's Redis requires the password it generated into its Secret, in $OP_NS: the ShardSet
# reads it from a copy in its own namespace (piped, so that it is in no command line).
kubectl get secret -n "$OP_NS" shardset-operator-redis -o jsonpath='{.data.password}' | base64 -d |
  kubectl create secret generic shardset-operator-redis -n "$DEMO_NS" --from-file=password=/dev/stdin \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
in_namespaces tests/demo/shardset.yaml | kubectl apply -n "$DEMO_NS" -f -

say "6/7 waiting until the ShardSet is Ready (timeout $TIMEOUT)"
if ! kubectl wait -n "$DEMO_NS" shardset/demo-bot --for=condition=Ready --timeout="$TIMEOUT"; then
  kubectl get -n "$DEMO_NS" shardsets,pods -o wide >&2 || true
  kubectl describe -n "$DEMO_NS" shardset/demo-bot >&2 || true
  exit 1
fi
kubectl get -n "$DEMO_NS" shardsets
kubectl get -n "$DEMO_NS" pods -l shardset.io/shardset=demo-bot -o wide

say "7/7 the bot tier: demo-handler (tests/demo/demo-handler.yaml) answering through the bus"
in_namespaces tests/demo/demo-handler.yaml | kubectl apply -n "$DEMO_NS" -f -
kubectl rollout status -n "$DEMO_NS" deployment/demo-handler --timeout="$TIMEOUT"
# The fake's report on the messages created since the handlers run (with the bus, the ones
# created while the shards were connecting are answered too; earlier ones reached no shard).
since=$(date +%s%3N)
replies() { # through the API server's service proxy; replies may take up to 2 s
  local until=$(($(date +%s%3N) - 2000))
  kubectl get --raw "/api/v1/namespaces/$DEMO_NS/services/fake-discord:8080/proxy/control/replies?since_ms=$since&until_ms=$until" 2>/dev/null
}
answered() { # at least 10 s of messages, each answered exactly once
  replies | jq -e '.messages >= 200 and .exactly_once == .messages' >/dev/null 2>&1
}
deadline=$((SECONDS + 180))
until answered; do
  ((SECONDS < deadline)) || { kubectl logs -n "$DEMO_NS" deployment/demo-handler --tail=20 >&2; replies >&2; echo "the handlers did not answer every message within 180 s" >&2; exit 1; }
  sleep 2
done
kubectl get -n "$DEMO_NS" pods -l app.kubernetes.io/name=demo-handler -o wide
replies | jq -r '"fake Discord: \(.messages) messages since the handlers started, \(.exactly_once) answered exactly once, \(.none) not yet, \(.multiple) more than once"'

cat <<MSG

The demo bot's 8 shards are connected to the fake Discord, 2 per pod, and publish every event to
NATS; the demo-handler replicas answer each message through it. To look around:

  eval "\$(make -s cluster)"                       # kubectl, helm, kind and the KUBECONFIG
  kubectl get shardsets -n $DEMO_NS                # Shards, Ready, Pods, Guilds
  kubectl describe shardset demo-bot -n $DEMO_NS   # conditions and Events
  kubectl scale shardset demo-bot -n $DEMO_NS --replicas=12   # reshard
  kubectl scale deployment demo-handler -n $DEMO_NS --replicas=3   # more handlers
  kubectl get --raw /api/v1/namespaces/$DEMO_NS/services/fake-discord:8080/proxy/control/replies

  # the fake Discord's control API: every Identify, violation and session
  kubectl port-forward -n $DEMO_NS svc/fake-discord 8080 &
  curl -s localhost:8080/control/identifies; curl -s localhost:8080/control/violations

  # the operator's metrics, from the leader (the replica holding the Lease; the standby's are idle)
  kubectl port-forward -n $OP_NS pod/\$(kubectl get lease -n $OP_NS shardset-operator -o jsonpath='{.spec.holderIdentity}') 8081:8080 &
  curl -s localhost:8081/metrics | grep shardset_operator

Remove it all with: make cluster-down
MSG
