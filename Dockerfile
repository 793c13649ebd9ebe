# civicstream: one image for every command (worker, sink, archive, serve, replay, ...).
#
#   docker build -t civicstream:0.1.0 .
#   docker run --rm civicstream:0.1.0 --help
#
# Multi-stage: the build stage makes a virtualenv from the pinned lock file
# (deploy/docker/requirements.txt, regenerated with `make docker-lock`); the runtime stage
# is the slim Python image plus that virtualenv, run as an unprivileged user.
# Pin the base image by digest in production: `docker buildx imagetools inspect
# python:3.11.7-slim-bookworm` prints it; pass it as --build-arg PYTHON_IMAGE=...@sha256:...
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/civicstream
COPY deploy/docker/requirements.txt /src/deploy/docker/requirements.txt
RUN /opt/civicstream/bin/pip install --no-deps --require-hashes -r deploy/docker/requirements.txt
COPY pyproject.toml README.md /src/
COPY civicstream /src/civicstream
COPY schemas /src/schemas
COPY processors /src/processors
COPY streams /src/streams
COPY sinks /src/sinks
COPY telemetry /src/telemetry
COPY kafkaconf /src/kafkaconf
RUN /opt/civicstream/bin/pip install --no-deps . \
    && /opt/civicstream/bin/pip check

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="civicstream" \
      org.opencontainers.image.description="Open streaming backbone for a city's open data" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 civic \
    && useradd --system --uid 10001 --gid civic --home-dir /var/lib/civicstream \
       --create-home --shell /usr/sbin/nologin civic
COPY --from=build /opt/civicstream /opt/civicstream
ENV PATH=/opt/civicstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CIVIC_STORE_URL=sqlite:////var/lib/civicstream/civicstream.db \
    CIVIC_ARCHIVE_DIR=/var/lib/civicstream/archive
WORKDIR /var/lib/civicstream
USER 10001:10001
ENTRYPOINT ["civicstream"]
CMD ["--help"]
