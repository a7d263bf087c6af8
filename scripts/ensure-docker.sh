#!/usr/bin/env bash
# Makes sure a Docker engine in Swarm mode runs here, for the container tests (pytest -m containers) and
# scripts/build-images.sh: installs Debian's docker.io and debootstrap when missing (as root), starts dockerd when
# it is not running (in the background, logging to /var/log/dockerd.log, where no systemd runs it) and makes this
# engine a one-node Swarm (advertised on 127.0.0.1). Called by scripts/ensure-system.sh and by the test that stops
# and restarts the daemon. `scripts/ensure-docker.sh --clean` removes what the container tests may have left
# (stacks, services, containers, networks, volumes and configs named as theirs); images stay cached.
set -euo pipefail

TEST_PREFIX=prewarm-test-  # stacks and services of the tests are named so

# Every name of the container tests starts with $TEST_PREFIX: stacks, services, and so their tasks' containers,
# networks, volumes and configs.
if [ "${1:-}" = "--clean" ]; then
  docker info >/dev/null 2>&1 || exit 0
  names() { docker "$@" --format '{{.Name}}' 2>/dev/null | grep "^$TEST_PREFIX" || true; }
  for stack in $(names stack ls); do docker stack rm "$stack" >/dev/null; done
  for service in $(names service ls); do docker service rm "$service" >/dev/null; done
  for _ in $(seq 60); do  # Swarm removes the tasks' containers asynchronously
    [ -z "$(docker ps -a --format '{{.Names}}' | grep "^$TEST_PREFIX")" ] && break
    sleep 1
  done
  docker ps -a --format '{{.Names}}' | grep "^$TEST_PREFIX" | xargs -r docker rm -f >/dev/null || true
  for kind in network volume config secret; do
    names "$kind" ls | xargs -r docker "$kind" rm >/dev/null || true
  done
  exit 0
fi

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "warning: missing ${need[*]}; install them with apt-get as root (the container tests need them)" >&2
    exit 0
  fi
  echo "installing Debian packages: ${need[*]}"
  [ -n "${APT_UPDATED:-}" ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "warning: no Docker engine answers and only root can start one here (the container tests need it)" >&2
    exit 0
  fi
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    echo "starting dockerd (log: /var/log/dockerd.log)"
    rm -f /var/run/docker.pid
    setsid dockerd >>/var/log/dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "error: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" = inactive ]; then
  echo "initialising a one-node Swarm"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
# After a daemon restart the node takes a moment to be an active manager again.
for _ in $(seq 120); do
  [ "$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}')" = "active true" ] && break
  sleep 0.5
done
