# syntax=docker/dockerfile:1
# One image for every streamcdp process: `streamcdp worker` (the default), `streamcdp collect` (the HTTP
# collector), `streamcdp lag-exporter`, `streamcdp topics` and the other CLI commands
# (`docker run IMAGE produce < events.jsonl`). Configured by STREAMCDP_* variables only (README, Settings).
#
#   docker build -t streamcdp .
#
# Stage 1 builds the project's wheel and the wheels of its pinned dependencies (all manylinux wheels for
# CPython 3.11), and compiles the pure per-event stages with mypyc (scripts/build_compiled.sh: ~25 % less
# worker CPU per event, bench/README.md); stage 2 installs the wheels into a clean slim image with no build
# tools and puts the compiled extensions next to the installed modules. A failed compile fails the build:
# the image is the production artefact. The worker checks at start that every extension was built from the
# source beside it (streams/compiled.py).

FROM python:3.11.14-slim-bookworm AS build
# gcc and the C library headers for mypyc; this image's Python has its headers (/usr/local/include), so
# Debian's python3-dev (for Debian's own Python) is not needed. Not pinned to Debian package versions: the
# base image pins the release (bookworm), and a superseded point version leaves the mirror.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY schemas schemas
COPY streams streams
COPY agents agents
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .
# mypyc (shipped with mypy, the version of pyproject.toml's `test` extra) type-checks the modules against
# their dependencies, so those are installed too, from the wheels just built.
RUN python -m pip install --no-cache-dir --disable-pip-version-check --no-index --find-links=/wheels \
      "streamcdp==0.1.0" \
 && python -m pip install --no-cache-dir --disable-pip-version-check "mypy==2.4.1"
COPY scripts/build_compiled.sh scripts/build_compiled.sh
# The extensions (next to their modules), mypyc's shared library and the stamp, laid out as in site-packages.
RUN PYTHON=python scripts/build_compiled.sh \
 && mkdir /compiled \
 && find core schemas streams agents -name '*.so' -exec cp --parents {} /compiled/ \; \
 && cp ./*__mypyc.*.so streamcdp-compiled.json /compiled/

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="streamcdp" \
      org.opencontainers.image.description="streamcdp worker, collector and CLI"
# A fixed non-root uid/gid, so Kubernetes' runAsNonRoot can verify it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 streamcdp \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin streamcdp \
 && install -d -o 10001 -g 10001 /var/lib/streamcdp
COPY --from=build /wheels /wheels
# --no-index: only the wheels built above, exactly the versions pinned in pyproject.toml.
RUN python -m pip install --no-cache-dir --disable-pip-version-check --no-index --find-links=/wheels \
      "streamcdp==0.1.0" \
 && rm -rf /wheels
COPY --from=build /compiled/ /usr/local/lib/python3.11/site-packages/
# The image only builds when every listed module imports from its extension, in step with its source.
RUN python -m streams.compiled check --require-compiled
WORKDIR /app
# The segment definitions and the propensity model are data the defaults point at (relative to /app).
COPY config config
COPY models models
COPY deploy/docker/healthcheck.py /usr/local/bin/streamcdp-healthcheck
ENV STREAMCDP_WEB_HOST=0.0.0.0 \
    STREAMCDP_DATA_DIR=/var/lib/streamcdp \
    STREAMCDP_LOG_FORMAT=json
USER 10001:10001
VOLUME ["/var/lib/streamcdp"]
EXPOSE 6066 8088
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "/usr/local/bin/streamcdp-healthcheck"]
ENTRYPOINT ["streamcdp"]
CMD ["worker"]
