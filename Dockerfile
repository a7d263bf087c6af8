# The prewarm image: one image for the controller, the gateway, the replicas and `prewarm db upgrade`.
#   docker build -t prewarm:0.1.0 .        (compose.yaml builds it for you: docker compose up -d --build)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY migrations ./migrations
COPY prewarm ./prewarm
COPY inference ./inference
COPY forecaster ./forecaster
COPY controller ./controller
COPY models ./models
COPY data ./data

# Editable install: `prewarm db upgrade` finds alembic.ini and migrations/ next to the sources in /app
# (prewarm/db/migrate.py looks for them two levels above itself).
RUN pip install -e . \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin prewarm \
    && mkdir -p /var/lib/prewarm \
    && chown 10001 /var/lib/prewarm

USER 10001
ENV PREWARM_REPLICA_MODEL_REPO=/app/models/onnx \
    PREWARM_REPLICA_STATE_DIR=/var/lib/prewarm/replicas
ENTRYPOINT ["prewarm"]
CMD ["--help"]
