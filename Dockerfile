# keyburn: the scanner and the responder (`keyburn serve`) in one image.
#
#   docker build -t keyburn .
#   docker run --rm -v "$PWD:/src:ro" keyburn scan /src
#   docker run -d -p 8787:8787 -v keyburn-data:/var/lib/keyburn \
#     -e KEYBURN_WEBHOOK_SECRET -e KEYBURN_GITHUB_TOKEN keyburn serve
#
# Build stage: the release binary, from the locked dependency set.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin keyburn \
 && strip target/release/keyburn

# Run stage: the binary, CA certificates for the providers' APIs, git for
# history scans, and an unprivileged user owning the data volume.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/keyburn \
      --shell /usr/sbin/nologin keyburn \
 && install -d -m 0700 -o keyburn -g keyburn /var/lib/keyburn
COPY --from=build /src/target/release/keyburn /usr/local/bin/keyburn
USER keyburn:keyburn
WORKDIR /var/lib/keyburn
# The queue, the audit log and the generated audit key live here.
VOLUME ["/var/lib/keyburn"]
ENV KEYBURN_DATA_DIR=/var/lib/keyburn \
    KEYBURN_LISTEN=0.0.0.0:8787 \
    KEYBURN_LOG_FORMAT=json
EXPOSE 8787
# `keyburn serve` drains connections for server.shutdown_drain_secs (10 s)
# after SIGTERM; give it that long before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/keyburn"]
CMD ["serve"]
