# The tenantry server image, built by docker-compose.yml (`docker compose build`).
#
# Dependencies are built in a layer of their own with cargo-chef, so a change to the
# sources rebuilds tenantry alone, not the hundreds of crates under it:
#   planner  reads the manifests (Cargo.toml, Cargo.lock) of the tree into recipe.json, a
#            description of the dependency graph that changes only when the dependencies do;
#   build    first builds every dependency from recipe.json alone ("cook") — Docker keeps
#            that layer for as long as the recipe is byte-for-byte the same — then copies
#            the sources and builds tenantry on top of it.
# .dockerignore keeps the build context to what the build reads (no target/, no .git, no
# .env with the stack's secrets).

FROM rust:1.95-bookworm AS chef
# The version is pinned, as the lock file pins the crates: the same recipe, the same image.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin tenantry --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin tenantry && cp target/release/tenantry /tenantry

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 tenantry
COPY --from=build /tenantry /usr/local/bin/tenantry
USER tenantry
ENV TENANTRY_LISTEN=0.0.0.0:8080
EXPOSE 8080
# `tenantry healthcheck` asks the server in this container for /health/ready (503 while
# Postgres is unreachable): no curl in the image. The start period covers `serve` waiting
# for the database (DATABASE_CONNECT_TIMEOUT, 60 s) and bootstrapping it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["tenantry", "healthcheck"]
ENTRYPOINT ["tenantry"]
CMD ["serve"]
