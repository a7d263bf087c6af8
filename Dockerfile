# The prewarm image: one image for the controller, the gateway, the replicas and `prewarm db upgrade`.
#   docker build -t prewarm:0.1.0 .                                   (from the public Python image)
#   scripts/build-images.sh                                           (here: from a Debian base built locally)
# BASE_IMAGE is any Debian-based image with python3 (>= 3.11) and its venv module.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# How pip reaches its index during the build (scripts/build-images.sh passes this machine's settings; unset by
# default, then pip uses PyPI with its own certificates).
ARG PIP_INDEX_URL
ARG PIP_CERT
ARG PIP_DEFAULT_TIMEOUT

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/prewarm \
    PATH=/opt/prewarm/bin:$PATH

# nginx carries the gateway's requests (PREWARM_GATEWAY_PROXY=nginx, the default).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin prewarm \
    && mkdir -p /var/lib/prewarm \
    && chown 10001 /var/lib/prewarm

# Dependencies first, in a layer of their own: a change to the sources rebuilds only the layers below.
WORKDIR /app
COPY pyproject.toml ./
RUN python3 -m venv /opt/prewarm \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
       > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY prewarm ./prewarm
COPY inference ./inference
COPY forecaster ./forecaster
COPY controller ./controller
COPY models ./models
COPY data ./data

# Editable install: `prewarm db upgrade` finds alembic.ini and migrations/ next to the sources in /app
# (prewarm/db/migrate.py looks for them two levels above itself).
RUN pip install --no-deps -e .

USER 10001
ENV PREWARM_REPLICA_MODEL_REPO=/app/models/onnx \
    PREWARM_REPLICA_STATE_DIR=/var/lib/prewarm/replicas
ENTRYPOINT ["prewarm"]
CMD ["--help"]
