# syntax=docker/dockerfile:1
# nim-autoscaler controller image.
#
#   docker build -t nim-autoscaler:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# "build" makes wheels of the project and of every dependency; "runtime" installs only those
# wheels (no index, no compiler, no pip cache) into a slim image that runs as a non-root user.
# Both start from "base", which pins the Python image and carries the OCI labels.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Image metadata; VERSION must equal the version in pyproject.toml (a test checks it).
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""

# ---------------------------------------------------------------------------------------------
# Common base: the pinned Python image and the image metadata, inherited by both stages.
FROM ${PYTHON_IMAGE} AS base

# Build arguments are scoped to a stage: each stage re-declares the global ones it uses.
ARG VERSION
ARG REVISION
ARG CREATED

LABEL org.opencontainers.image.title="nim-autoscaler" \
      org.opencontainers.image.description="Autoscaler for GPU LLM inference servers (NVIDIA NIM for LLMs, vLLM) driven by Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# ---------------------------------------------------------------------------------------------
FROM base AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Dependencies first, from the committed lock alone (exact versions and hashes, generated from
# pyproject.toml by `make lock`; no extras, so no matplotlib or tqdm), so this layer is reused
# while only the sources change. They all have manylinux wheels for CPython 3.11, so no compiler
# is installed.
COPY requirements.lock ./
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock
# Then the project itself, without resolving anything again (its dependencies are in /wheels).
COPY pyproject.toml README.md ./
COPY autoscaler ./autoscaler
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
FROM base AS runtime

ARG VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

# The wheels are bind-mounted from the build stage, so they never land in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "nim-autoscaler==${VERSION}"

# Numeric user and group (no entry in /etc/passwd needed), so Kubernetes can verify
# runAsNonRoot. The root filesystem can be read-only: only /tmp is written.
USER 65532:65532
WORKDIR /tmp

EXPOSE 8080
ENTRYPOINT ["nim-autoscaler"]
CMD ["run"]
