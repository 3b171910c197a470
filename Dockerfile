# syntax=docker/dockerfile:1
# The director as a small image that runs as a non-root user on the embedded default: a data
# directory in /data (director.cfg for the dummy cloud, SQLite, a CA generated on first start).
#
#   docker build -t conpaas-director .
#   docker run -d -p 5555:5555 -v conpaas-data:/data conpaas-director
#   docker run --rm -it -v conpaas-data:/data conpaas-director adduser alice@example.org alice
#
# Every argument after the image name is a `director --data-dir /data` command (serve, init,
# adduser, backup, ...). docs/operations.md ("Container image") says more.

ARG RUST_VERSION=1.90
ARG DEBIAN_RELEASE=bookworm

# Build: the release binaries, from the committed Cargo.lock.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# libpq for the PostgreSQL backend; libssl for the managers' TLS 1.0 (legacy-tls); cmake for
# aws-lc-sys where its C build needs it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libpq-dev libssl-dev cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Without the line tables the release profile keeps for backtraces: smaller binaries.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN cargo build --release --locked -p conpaas-bin --bin director --bin cpscheck \
    && install -D -m 0755 target/release/director target/release/cpscheck -t /out/

# Run: Debian slim with the shared libraries the binary needs beyond libc (libpq and OpenSSL,
# which libpq uses too), the CA roots for EC2 and OpenNebula endpoints, and nothing else.
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 conpaas \
    && useradd --system --uid 10001 --gid conpaas --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin conpaas \
    && install -d -o conpaas -g conpaas -m 0700 /data
COPY --from=build /out/director /out/cpscheck /usr/local/bin/
USER conpaas:conpaas
WORKDIR /data
VOLUME ["/data"]
# DIRECTOR_URL of the generated director.cfg is https://localhost:5555; `init HOST` sets the
# name clients and VMs reach the director at.
EXPOSE 5555
# `director health`: /readyz at this container's own listener, the certificate checked against
# the CA of /data/certs; exit status 0 when ready (a degraded cloud included).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["director", "--data-dir", "/data", "health"]
ENTRYPOINT ["director", "--data-dir", "/data"]
CMD ["serve"]
