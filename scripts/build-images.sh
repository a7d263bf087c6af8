#!/usr/bin/env bash
# Builds every image compose.yaml needs, from Debian's packages and this repository, with no image hub:
#
#   prewarm-base:bookworm        debootstrap --variant=minbase of Debian bookworm + python3 and its venv module
#   prewarm-postgres:15          deploy/docker/postgres: Debian's postgresql, FROM the base
#   prewarm-prometheus:2.42      deploy/docker/prometheus: Debian's prometheus, FROM the base
#   prewarm:$PREWARM_IMAGE_TAG   the root Dockerfile with BASE_IMAGE=prewarm-base:bookworm (tag default 0.1.0)
#
# Every image carries the label org.prewarm.inputs, a hash of what it is built from (files, base image, Debian
# suite and mirror); an image whose label matches is reused as it is, so a second run takes seconds. Progress goes
# to stderr; stdout gets the variables compose.yaml reads, one KEY=VALUE a line:
#
#   set -a; eval "$(scripts/build-images.sh)"; set +a; docker stack deploy -c compose.yaml prewarm
#
# Options: --content-tag also tags the prewarm image by the hash of its inputs (prewarm:src-<hash>) and prints that
# tag, so that a stack deployed from it never sees another build of prewarm:0.1.0 (the tests use it).
# Needs: root (debootstrap), a running Docker engine, the Debian mirror and pip's index reachable from this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=prewarm-base:$SUITE
POSTGRES_IMAGE=prewarm-postgres:15
PROMETHEUS_IMAGE=prewarm-prometheus:2.42
PREWARM_IMAGE_TAG=${PREWARM_IMAGE_TAG:-0.1.0}
BASE_PACKAGES=python3,python3-venv,ca-certificates
LABEL=org.prewarm.inputs
content_tag=false
for arg in "$@"; do
  case $arg in
    --content-tag) content_tag=true ;;
    -h|--help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "build-images: $*" >&2; }

# Files hashed in a stable order (names and contents), skipping Python's caches.
hash_files() {
  find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z \
    | xargs -0 sha256sum | sha256sum | cut -c1-32
}

label_of() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

# The machine's extra CA certificates (a TLS-inspecting egress, a company CA): the base trusts them too, so that
# apt and pip inside the builds reach the same mirrors the host does.
extra_cas=()
for file in /usr/local/share/ca-certificates/*.crt; do [ -f "$file" ] && extra_cas+=("$file"); done

base_inputs=$( {
  echo "$SUITE $MIRROR $BASE_PACKAGES"
  sed -n '/^build_base()/,/^}/p' "$0"
  [ ${#extra_cas[@]} -gt 0 ] && cat "${extra_cas[@]}"
} | sha256sum | cut -c1-32)

build_base() {
  local rootfs
  rootfs=$(mktemp -d /var/tmp/prewarm-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap $SUITE from $MIRROR (about a minute)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >&2
  cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
SOURCES
  # As Docker's own Debian images: no documentation or translations, no package cache kept.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EXCLUDES'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EXCLUDES
  echo 'APT::Keep-Downloaded-Packages "false";' > "$rootfs/etc/apt/apt.conf.d/docker-clean"
  echo 'APT::Install-Recommends "false";' > "$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  if [ ${#extra_cas[@]} -gt 0 ]; then
    cp "${extra_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change "LABEL $LABEL=$base_inputs" --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
    - "$BASE_IMAGE" >/dev/null
}

if [ "$(label_of "$BASE_IMAGE")" = "$base_inputs" ]; then
  log "$BASE_IMAGE is up to date"
else
  start=$SECONDS
  build_base
  log "$BASE_IMAGE built in $((SECONDS - start)) s"
fi
base_id=$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE")

# pip's index and certificates as this machine uses them (local file:// indexes and wheel folders stay out: a
# build cannot see them); apt and pip in the builds use the host's network (and so its resolver and egress).
pip_args=()
pip_value() { # env first, then pip's config files
  local env_name=$1 key=$2 value
  value=${!env_name:-}
  [ -n "$value" ] || value=$(python3 -m pip config get "global.$key" 2>/dev/null || true)
  printf '%s' "$value"
}
index_url=$(pip_value PIP_INDEX_URL index-url)
case $index_url in http://*|https://*) pip_args+=(--build-arg "PIP_INDEX_URL=$index_url") ;; esac
if [ -n "$(pip_value PIP_CERT cert)" ]; then
  pip_args+=(--build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)  # the base's bundle, with the host's CAs
fi
timeout=$(pip_value PIP_DEFAULT_TIMEOUT timeout)
[ -n "$timeout" ] && pip_args+=(--build-arg "PIP_DEFAULT_TIMEOUT=$timeout")

# build IMAGE INPUTS_HASH CONTEXT [docker build options...]: reuse the image when its label holds the hash.
build() {
  local image=$1 inputs=$2 context=$3 start=$SECONDS
  shift 3
  if [ "$(label_of "$image")" = "$inputs" ]; then
    log "$image is up to date"
    return
  fi
  log "building $image"
  local previous
  previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  docker build --quiet --network host --label "$LABEL=$inputs" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -t "$image" "$@" "$context" 2>&1 >/dev/null | { grep -v -e 'legacy builder is deprecated' \
    -e 'Install the buildx component' -e 'docs.docker.com/go/buildx' -e '^ *$' >&2 || true; }
  log "$image built in $((SECONDS - start)) s"
  # The image this build replaced, when nothing else uses it (no tag, no container).
  if [ -n "$previous" ] && [ "$(docker image inspect --format '{{len .RepoTags}}' "$previous")" = 0 ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
}

inputs_of() { echo "$base_id $1 $(hash_files "${@:2}")" | sha256sum | cut -c1-32; }

build "$POSTGRES_IMAGE" "$(inputs_of "" deploy/docker/postgres)" deploy/docker/postgres
build "$PROMETHEUS_IMAGE" "$(inputs_of "" deploy/docker/prometheus)" deploy/docker/prometheus
# The prewarm image's inputs: what the Dockerfile copies (the .dockerignore rules keep caches out of both).
prewarm_inputs=$(inputs_of "${pip_args[*]}" Dockerfile .dockerignore pyproject.toml README.md alembic.ini \
  migrations prewarm inference forecaster controller models data)
build "prewarm:$PREWARM_IMAGE_TAG" "$prewarm_inputs" . "${pip_args[@]}"
if $content_tag; then
  docker tag "prewarm:$PREWARM_IMAGE_TAG" "prewarm:src-${prewarm_inputs:0:12}"
  PREWARM_IMAGE_TAG=src-${prewarm_inputs:0:12}
  # Older content tags go (with their layers), unless a container still uses them.
  for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' prewarm | grep '^prewarm:src-' || true); do
    [ "$old" = "prewarm:$PREWARM_IMAGE_TAG" ] && continue
    if [ -z "$(docker ps -aq --filter "ancestor=$old")" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
  done
fi

echo "POSTGRES_IMAGE=$POSTGRES_IMAGE"
echo "PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE"
echo "PREWARM_IMAGE_TAG=$PREWARM_IMAGE_TAG"
