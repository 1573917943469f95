# syntax=docker/dockerfile:1
#
# inventory-service image: gRPC on 9083 (with reflection, health and gRPC-Web),
# REST/JSON on 8083, SQLite database in the /app/data volume.
#
#   docker build -t inventory-service .
#   docker run --rm -p 8083:8083 -p 9083:9083 -v inventory-data:/app/data inventory-service
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

# ---- build -----------------------------------------------------------------
# rust:*-slim already ships gcc and libc6-dev (for the bundled SQLite); the
# protos are compiled by protox in build.rs, so no protoc is needed.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build

# Inputs of the build only: manifests, build script, protos, migrations
# (embedded into the binary) and sources. See .dockerignore.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
# build.rs also compiles the test-only protos (tests/proto), so they are inputs.
COPY tests/proto ./tests/proto
COPY migrations ./migrations
COPY src ./src
# The web console, built and committed (web/dist), embedded by the build.
COPY web/dist ./web/dist

# The registry and target dir live in BuildKit cache mounts, so a source
# change rebuilds only this crate; the binary is copied out of the mount.
# The dist profile (Cargo.toml) is release with whole-program LTO.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --profile dist --locked --bin inventory-service \
    && install -D -m 0755 target/dist/inventory-service /out/inventory-service

# ---- runtime ---------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates follows the Debian release; pinning its version would break
# the build at every Debian security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 inventory \
    && useradd --uid 10001 --gid inventory --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin inventory

WORKDIR /app
COPY --from=builder /out/inventory-service /usr/local/bin/inventory-service
COPY config/config.yaml /app/config/config.yaml
# The default DSN is ./data/inventory.db, relative to /app.
RUN mkdir -p /app/data && chown inventory:inventory /app/data

# Numeric, so runtimes can check runAsNonRoot (uid 10001 = inventory).
USER 10001:10001
VOLUME /app/data
EXPOSE 8083 9083

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/inventory-service", "--healthcheck"]

ENTRYPOINT ["/usr/local/bin/inventory-service"]
