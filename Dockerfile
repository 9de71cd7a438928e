# syntax=docker/dockerfile:1
# Colloquy: a multi-stage build. The first stage compiles the dependencies alone so that
# code changes rebuild only the crate; the runtime image holds one binary and its config.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependency layer: a stub crate with the real manifest and lock file. The workspace's other
# member (bench/, the benchmark tools) only needs to exist as a manifest with a stub target:
# the image builds the server alone.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml bench/Cargo.toml
RUN mkdir -p src tests/api bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && touch src/lib.rs tests/api/main.rs \
    && cargo build --release --locked \
    && rm -rf src tests
# The crate itself. Migrations and config/default.toml are compiled into the binary.
COPY src ./src
COPY migrations ./migrations
COPY config ./config
COPY tests ./tests
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin colloquy \
    && cp target/release/colloquy /usr/local/bin/colloquy

FROM debian:bookworm-slim AS runtime
# ca-certificates follows the base image's security updates; pinning it would freeze them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home colloquy \
    && mkdir -p /app/data \
    && chown colloquy:colloquy /app/data
WORKDIR /app
COPY --from=build /usr/local/bin/colloquy /usr/local/bin/colloquy
# Per-environment overrides (config/production.toml etc.); defaults are in the binary.
COPY config ./config
USER 10001:10001
ENV COLLOQUY_ENV=production \
    COLLOQUY_LISTEN=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["colloquy", "healthcheck"]
ENTRYPOINT ["colloquy"]
CMD ["serve"]
