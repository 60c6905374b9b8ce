# syntax=docker/dockerfile:1
# edgeoff: one image for every daemon (edgeoff-site, edgeoff-worker, edgeoff-agent) and the `edgeoff` CLI.
#
#   docker build -t edgeoff .
#   docker run --rm edgeoff edgeoff --help
#   docker run --rm edgeoff edgeoff-site --site ed --dataset DS1 --inject-failures
#
# Multi-architecture (amd64, arm64, armv7), with a buildx builder that has QEMU binfmt handlers:
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 \
#       --build-arg PIP_EXTRA_INDEX_URL=https://www.piwheels.org/simple -t REGISTRY/edgeoff:0.1.0 --push .
#
# PIP_EXTRA_INDEX_URL (default empty): PyPI has no armv7 wheels of numpy, scipy, scikit-learn and
# matplotlib; piwheels (the Raspberry Pi project's index) has them for Debian bookworm and CPython 3.11,
# which is why the base image is pinned to bookworm. amd64 and arm64 need nothing but PyPI. Without an
# extra index, armv7 would compile those packages from source (no compilers in this image: it fails).
#
# No secrets in the image: broker passwords, the Redis password and TLS files are mounted at run time
# (compose `secrets:`, Kubernetes Secrets, systemd credentials).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: wheels of the project and its dependencies, installed into a venv -------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /src
# Only what the package needs (see .dockerignore): no tests, results, secrets or venvs.
COPY pyproject.toml README.md ./
COPY edgeoff ./edgeoff
COPY site_daemon ./site_daemon
COPY prediction_worker ./prediction_worker
COPY mobile_agent ./mobile_agent
COPY launcher ./launcher
# The same path as the systemd install (/opt/edgeoff/venv), so the two deployments read alike.
RUN python -m venv /opt/edgeoff/venv \
 && /opt/edgeoff/venv/bin/pip install --no-cache-dir . \
 && /opt/edgeoff/venv/bin/edgeoff --version

# ---- runtime: the venv on a clean base, a non-root user ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="edgeoff" \
      org.opencontainers.image.description="Proactive, fault-tolerant edge offloading daemons (MQTT + Redis)" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 edgeoff \
 && useradd --system --uid 10001 --gid edgeoff --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin edgeoff
COPY --from=build /opt/edgeoff/venv /opt/edgeoff/venv
ENV PATH=/opt/edgeoff/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# Root-owned and read-only: compose runs the daemons under the host user's uid instead (see compose/), so
# nothing here may depend on the home or working directory being writable: state goes to /tmp or volumes.
WORKDIR /opt/edgeoff
USER 10001:10001
# Prometheus metrics (each daemon's METRICS_PORT, 9100 in compose and k8s).
EXPOSE 9100
# No wrapper entrypoint: the command names the daemon, e.g. `edgeoff-site --site ed`, `edgeoff-worker`,
# `edgeoff-agent --agent md`, `edgeoff health /tmp/health.json`. The daemons stop cleanly on SIGTERM.
CMD ["edgeoff", "--help"]
