# The tenantry server image, used by docker-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/tenantry /tenantry

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 tenantry
COPY --from=build /tenantry /usr/local/bin/tenantry
USER tenantry
ENV TENANTRY_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["tenantry"]
CMD ["serve"]
