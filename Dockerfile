# A container image with the example binaries (hybrid, primary, enrichment, loadgen,
# quickstart). Build:  docker build -t watershed-examples .
# Run:    docker run --rm -e WATERSHED_KAFKA_BROKERS=kafka:9092 watershed-examples hybrid --help
# See docs/deployment.md for the environment, the checkpoint store and signals.
#
# Build stage: librdkafka is compiled from source by rdkafka-sys, which needs cmake and a C
# compiler; the AWS SDK's TLS (aws-lc-rs) needs cmake and clang-free builds work with gcc.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p watershed-examples --bins \
    && mkdir /out \
    && cp target/release/hybrid target/release/primary target/release/enrichment \
          target/release/loadgen target/release/quickstart /out/

# Run stage: a slim Debian with CA certificates (TLS to AWS and managed Kafka) and a user
# without privileges. The binaries link only glibc and libgcc dynamically.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/watershed --create-home watershed
COPY --from=build /out/ /usr/local/bin/
USER watershed
WORKDIR /var/lib/watershed
# tini forwards SIGTERM to the example, which then takes a final checkpoint and exits 0.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["quickstart"]
