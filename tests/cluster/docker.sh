#!/usr/bin/env bash
# Docker for the test cluster.
#   docker.sh up     use the Docker that answers; if none does, start Debian's dockerd with the
#                    capability-filtering runtime (docker/oci-capfilter) and record its PID
#   docker.sh down   stop the dockerd that `up` started (by its recorded PID; never one we did not start)
#   docker.sh owned  exit 0 when a dockerd started by this harness is running
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PIDFILE="$RUN_DIR/dockerd.pid"
SOCK=/var/run/docker.sock

# Our dockerd is running: the recorded PID is alive and is a dockerd (PIDs are reused).
alive() {
  [[ -f $PIDFILE ]] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]
}

docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

up() {
  if docker_answers; then
    alive && log "docker: ours (pid $(cat "$PIDFILE")) is running" || log "docker: using the running daemon"
    return 0
  fi
  command -v dockerd >/dev/null || die "no Docker answers and dockerd is not installed (tests/cluster/deps.sh installs docker.io)"
  if alive; then
    # Ours, but not answering (still starting, or wedged): give it a moment, then replace it.
    local pid i
    pid=$(cat "$PIDFILE")
    for i in $(seq 30); do docker_answers && return 0; sleep 1; done
    log "docker: our dockerd (pid $pid) does not answer; stopping it"
    stop_pid "$pid"
  fi
  # A dead earlier daemon leaves its pid files and socket behind; dockerd refuses to start over them.
  rm -f "$PIDFILE" /var/run/docker.pid "$SOCK"
  mkdir -p "$RUN_DIR"
  install -m 0755 "$CLUSTER_DIR/docker/oci-capfilter" "$RUN_DIR/oci-capfilter"
  log "docker: starting dockerd (log: $RUN_DIR/dockerd.log)"
  # setsid: the daemon outlives this script and is not killed with make's process group.
  setsid dockerd \
    --add-runtime "shardset-capfilter=$RUN_DIR/oci-capfilter" \
    --default-runtime shardset-capfilter \
    --pidfile /var/run/docker.pid \
    -H "unix://$SOCK" >>"$RUN_DIR/dockerd.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local i
  for i in $(seq 60); do
    docker_answers && { log "docker: dockerd up (pid $(cat "$PIDFILE"))"; return 0; }
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 1
  done
  tail -20 "$RUN_DIR/dockerd.log" >&2 || true
  die "dockerd did not come up (log: $RUN_DIR/dockerd.log)"
}

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  log "docker: pid $pid ignored SIGTERM for 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  if ! alive; then
    rm -f "$PIDFILE"
    log "docker: no dockerd of ours is running; leaving Docker alone"
    return 0
  fi
  local pid cpid=""
  pid=$(cat "$PIDFILE")
  # dockerd's own containerd: it normally stops with dockerd; remember it to make sure.
  [[ -f /var/run/docker/containerd/containerd.pid ]] && cpid=$(cat /var/run/docker/containerd/containerd.pid)
  log "docker: stopping our dockerd (pid $pid)"
  stop_pid "$pid"
  if [[ -n $cpid ]] && kill -0 "$cpid" 2>/dev/null && [[ $(cat /proc/"$cpid"/comm 2>/dev/null) == containerd ]]; then
    stop_pid "$cpid"
  fi
  rm -f "$PIDFILE" "$RUN_DIR/oci-capfilter"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  owned) alive ;;
  *) die "usage: $0 up|down|owned" ;;
esac
