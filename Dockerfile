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
# PYTHON_IMAGE (default python:3.11-slim-bookworm): any Debian bookworm image with python3 and its venv
# module; scripts/deploy-smoke builds one from debootstrap (no registry needed). No `# syntax=` line: it
# would make every BuildKit build fetch a frontend image from Docker Hub, and nothing here needs one.
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
# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change, not on
# every edit of the code.
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/edgeoff/venv \
 && python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      > /tmp/requirements.txt \
 && /opt/edgeoff/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
# Then the project itself (see .dockerignore): no tests, results, secrets or venvs. The same path as the
# systemd install (/opt/edgeoff/venv), so the two deployments read alike.
COPY edgeoff ./edgeoff
COPY launcher ./launcher
COPY site_daemon ./site_daemon
COPY prediction_worker ./prediction_worker
COPY mobile_agent ./mobile_agent
RUN /opt/edgeoff/venv/bin/pip install --no-cache-dir --no-deps . \
 && /opt/edgeoff/venv/bin/edgeoff --version

# ---- runtime: the venv on a clean base, a non-root user ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="edgeoff" \
      org.opencontainers.image.description="Proactive, fault-tolerant edge offloading daemons (MQTT + Redis)" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER. Not a --system
# account: 10001 is above SYS_UID_MAX (999), and useradd would warn about it on every build.
RUN groupadd --gid 10001 edgeoff \
 && useradd --no-log-init --uid 10001 --gid edgeoff --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin edgeoff
COPY --from=build /opt/edgeoff/venv /opt/edgeoff/venv
ENV PATH=/opt/edgeoff/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# Root-owned and read-only: nothing here may depend on the home or working directory being writable (compose
# and k8s run with a read-only root file system): state goes to /tmp or volumes.
WORKDIR /opt/edgeoff
USER 10001:10001
# Prometheus metrics (each daemon's METRICS_PORT, 9100 in compose and k8s).
EXPOSE 9100
# No wrapper entrypoint: the command names the daemon, e.g. `edgeoff-site --site ed`, `edgeoff-worker`,
# `edgeoff-agent --agent md`, `edgeoff health /tmp/health.json`. The daemons stop cleanly on SIGTERM.
CMD ["edgeoff", "--help"]
