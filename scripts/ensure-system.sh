#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use (when missing and we are root), makes sure the local
# PostgreSQL server is running and that a Docker engine in Swarm mode runs for the container tests
# (scripts/ensure-docker.sh). Called by `make test`, `make bench` and .ci/run.
set -euo pipefail

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium chromium-driver)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]}; install them with apt-get (tests that need them will fail)" >&2
  fi
fi
# The prometheus package may start a system instance on :9090; the tests run their own.
if [ -d /run/systemd/system ]; then :; else pkill -x prometheus 2>/dev/null || true; fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# The container tests fail with the reason when the engine is missing where Docker is expected (CI): no need to stop
# the other tests here.
scripts/ensure-docker.sh || echo "warning: no Docker engine in Swarm mode; the container tests (pytest -m containers) will fail or skip" >&2
