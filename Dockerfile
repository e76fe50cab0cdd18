# syntax=docker/dockerfile:1
#
# vote-api image: a release build on Debian 12 (bookworm), run on debian:bookworm-slim.
#
#   docker build -t vote-api .
#   docker run --rm vote-api --help          # entrypoint is vote-api:
#   docker run --rm vote-api seed            #   serve (default) | migrate | seed [--partners N]
#
# Runtime needs, proved without Docker by scripts/check-deploy (ldd on the binary,
# each library traced to its Debian package, each package shown to be in every
# Debian 12 image, and the highest GLIBC_ symbol version compared with bookworm's):
#   libgcc_s.so.1           libgcc-s1   (unwinding)
#   libm.so.6               libc6
#   libc.so.6               libc6
#   ld-linux-x86-64.so.2    libc6       (the dynamic loader)
# libc6 is a dependency of Debian's essential packages and libc6 depends on
# libgcc-s1, so debian:bookworm-slim has all of them and nothing is installed.
# The binary is glibc-linked on purpose: mirrord (see docs/mirrord.md, "glibc, not musl") injects with
# LD_PRELOAD, which a static musl binary would ignore; keep the two stages on the
# same Debian release so the glibc it was linked against is the one it runs with.

ARG RUST_VERSION=1.95

# ---- build ---------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or
# Cargo.lock change. Stub sources stand in for the crate (a library and a binary).
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/vote-api-* target/release/deps/vote_api-* target/release/deps/libvote_api-*

# The crate itself. db/ holds the SQL migrations and seed, assets/ the embedded
# CSS, fonts, images and client JS (both are compiled in with include_*!);
# build.rs fingerprints and gzips the assets.
COPY build.rs ./
COPY src ./src
COPY db ./db
COPY assets ./assets
RUN cargo build --release --locked

# ---- runtime -------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# UID/GID 1000, no login shell, no home: the Helm chart runs it with
# runAsNonRoot, a read-only root filesystem and every capability dropped.
RUN groupadd --gid 1000 vote-api \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin vote-api

COPY --from=build /app/target/release/vote-api /usr/local/bin/vote-api

LABEL org.opencontainers.image.title="vote-api" \
      org.opencontainers.image.description="Live conference poll with a deliberate referral-cache bug, built for mirrord demos" \
      org.opencontainers.image.licenses="MIT"

USER 1000:1000
ENV BIND_ADDR=0.0.0.0:8000
EXPOSE 8000
# SIGTERM (Docker's and Kubernetes' default) drains connections and stops within 10s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vote-api"]
CMD ["serve"]
