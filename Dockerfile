# The `arbor` binary in a small runtime image.
#
#   docker build -t arbor .
#   docker compose -f deploy/docker-compose.yml up -d
#
# Layer order is for the cache: RocksDB's C++ build (about 16 minutes on two
# cores) happens in a layer that depends only on the manifests, Cargo.lock and
# proto/, so editing Rust sources rebuilds only the workspace crates.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS base
# libclang-dev: rocksdb's bindgen loads libclang while building
# librocksdb-sys (scripts/setup.sh installs the same for local builds); the
# C++ compiler comes with the rust image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
WORKDIR /src

# A skeleton of the workspace: every manifest, Cargo.lock, proto/ as it is
# (its build script generates the gRPC code) and an empty stand-in for every
# other crate's sources. This stage reruns on any change, but its output
# changes only with the manifests, so the next stage's dependency layer
# stays cached.
FROM base AS skeleton
COPY . .
RUN set -eu; \
    mkdir -p /skeleton; \
    cp Cargo.lock /skeleton/; \
    cp -r proto /skeleton/proto; \
    for manifest in $(find . -name Cargo.toml -not -path './proto/*' -not -path '*/target/*' -not -path '*/node_modules/*'); do \
      dir=$(dirname "$manifest"); \
      mkdir -p "/skeleton/$dir/src"; \
      cp "$manifest" "/skeleton/$dir/"; \
      if [ -f "$dir/src/lib.rs" ]; then : > "/skeleton/$dir/src/lib.rs"; fi; \
      if [ -f "$dir/src/main.rs" ]; then echo 'fn main() {}' > "/skeleton/$dir/src/main.rs"; fi; \
      for target in $(sed -n 's/^path = "\(.*\.rs\)"$/\1/p' "$manifest"); do \
        mkdir -p "/skeleton/$dir/$(dirname "$target")"; \
        echo 'fn main() {}' > "/skeleton/$dir/$target"; \
      done; \
    done

FROM base AS builder
# 1. Dependencies only (RocksDB included), cached until a manifest changes.
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked -p arbor
# 2. The workspace itself. COPY keeps the files' modification times, which
#    may be older than the stand-ins built above, so touch them to make cargo
#    rebuild the workspace crates.
COPY . .
RUN find . -name '*.rs' -not -path './target/*' -exec touch {} + \
 && cargo build --release --locked -p arbor \
 && cp target/release/arbor /usr/local/bin/arbor

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates only; the binary needs glibc and libstdc++ (both in the
# slim image) and has RocksDB, lz4 and the rest built in. Health checks use
# bash's /dev/tcp, so no curl either.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/arbor --create-home arbor
COPY --from=builder /usr/local/bin/arbor /usr/local/bin/arbor
USER arbor
WORKDIR /var/lib/arbor
# Each process is configured by environment (ARBOR_*; see `arbor <process>
# --help`); the command names the process kind, e.g. `arbor store`.
ENV RUST_LOG=info,openraft=warn
VOLUME ["/var/lib/arbor"]
EXPOSE 5433 7100 8080 9100
ENTRYPOINT ["/usr/local/bin/arbor"]
CMD ["--help"]
