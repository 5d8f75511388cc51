# syntax=docker/dockerfile:1
# One image for every streamcdp process: `streamcdp worker` (the default), `streamcdp collect` (the HTTP
# collector), `streamcdp lag-exporter`, `streamcdp topics` and the other CLI commands
# (`docker run IMAGE produce < events.jsonl`). Configured by STREAMCDP_* variables only (README, Settings).
#
#   docker build -t streamcdp .
#
# Stage 1 builds the project's wheel and the wheels of its pinned dependencies; stage 2 installs them
# into a clean slim image with no build tools (every dependency ships manylinux wheels for CPython 3.11,
# so no compiler is needed in either stage, and none is in the final one).

FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY schemas schemas
COPY streams streams
COPY agents agents
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

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
