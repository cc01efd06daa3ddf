# dsi images: `dsi serve` coordinators and `dsi worker` target servers.
#
#   docker build --target cpu  -t dsi:cpu  .   # CPU (and wgpu) backends
#   docker build --target cuda -t dsi:cuda .   # adds the CUDA backend
#
# Both carry the bundled pair in /opt/dsi/models/pystd (the default model of
# every command) and run `dsi` as their entrypoint; deploy/ runs them.

ARG RUST_VERSION=1.88
ARG CUDA_VERSION=12.6.3

# ---- build: CPU ------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build-cpu
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p dsi-cli \
 && cp target/release/dsi /usr/local/bin/dsi

# ---- build: CUDA -----------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build-cuda
ARG RUST_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/* \
 && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
ENV PATH=/root/.cargo/bin:${PATH}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p dsi-cli --features cuda \
 && cp target/release/dsi /usr/local/bin/dsi

# ---- run: CPU --------------------------------------------------------------
FROM debian:bookworm-slim AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates mesa-vulkan-drivers libvulkan1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /opt/dsi dsi
COPY --from=build-cpu /usr/local/bin/dsi /usr/local/bin/dsi
COPY models/pystd /opt/dsi/models/pystd
ENV DSI_BUNDLED=/opt/dsi/models/pystd XDG_CACHE_HOME=/tmp/dsi-cache
USER dsi
# 8000: `dsi serve` (HTTP); 50051: `dsi worker` (gRPC).
EXPOSE 8000 50051
ENTRYPOINT ["dsi"]
CMD ["--help"]

# ---- run: CUDA -------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04 AS cuda
RUN useradd --system --uid 10001 --home /opt/dsi dsi
COPY --from=build-cuda /usr/local/bin/dsi /usr/local/bin/dsi
COPY models/pystd /opt/dsi/models/pystd
ENV DSI_BUNDLED=/opt/dsi/models/pystd XDG_CACHE_HOME=/tmp/dsi-cache
USER dsi
EXPOSE 8000 50051
ENTRYPOINT ["dsi"]
CMD ["--help"]
