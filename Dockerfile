# syntax=docker/dockerfile:1
# One image for every vigil service and the `vigil` command. The command picks the service:
#
#   docker build -t vigil .
#   docker run vigil vigil-broker          # or vigil-orchestrator, vigil-predictor, vigil-trainer,
#                                          # vigil-feedback, vigil-health
#   docker run vigil                       # `vigil up`: every service in one process
#
# Config comes from VIGIL_* environment variables (`__` between sections, e.g.
# VIGIL_DATABASE__URL) or a TOML file named by VIGIL_CONFIG; docs/configuration.md lists every key.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# --- toolchain: Rust plus what XGBoost's C++ build needs (it links GNU OpenMP) -------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS toolchain
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang libclang-dev g++ make git \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

# --- planner: the dependency recipe, which changes only when manifests or Cargo.lock do -----------
FROM toolchain AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- builder: dependencies in a layer of their own (cached until the recipe changes), then vigil ---
FROM toolchain AS builder
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0 CXX=g++
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
        -p vigil-cli -p vigil-broker -p vigil-orchestrator -p vigil-predictor \
        -p vigil-trainer -p vigil-feedback -p vigil-health \
    && mkdir -p /out \
    && cp target/release/vigil \
          target/release/vigil-broker \
          target/release/vigil-orchestrator \
          target/release/vigil-predictor \
          target/release/vigil-trainer \
          target/release/vigil-feedback \
          target/release/vigil-health \
          /out/

# --- runtime: the binaries, their shared libraries, a user that is not root ----------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil --create-home \
        --shell /usr/sbin/nologin vigil
COPY --from=builder /out/ /usr/local/bin/
WORKDIR /var/lib/vigil
USER 10001:10001
# Listen on every interface in a container; /metrics, /healthz and /readyz on 9464, gRPC on 50051.
ENV VIGIL_TELEMETRY__HTTP_ADDR=0.0.0.0:9464 \
    VIGIL_PREDICTOR__GRPC_ADDR=0.0.0.0:50051 \
    VIGIL_TELEMETRY__LOG_FORMAT=json
EXPOSE 9464 50051
# `vigil probe` asks this container's own /healthz (from telemetry.http_addr) without a shell or curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["vigil", "probe", "/healthz"]
CMD ["vigil", "up"]
