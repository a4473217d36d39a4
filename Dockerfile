# attention-service: attention_server (with attention_cli, attention_loadtest
# and attention_bench) on Debian bookworm.
#
#   scripts/image.sh build            # or: podman build --format docker -t attention-service .
#   podman run --rm -p 50051:50051 attention-service
#   podman run --rm -p 50051:50051 -e ATTN_SERVER_FLAGS="--workers=4 --log_calls=false" attention-service
#   podman run --rm -p 50051:50051 attention-service --drain_seconds=10   # arguments are server flags too
#
# Build arguments:
#   JOBS       parallel compile jobs (default 2)
#   ATTN_ARCH  -march of project code (default x86-64-v3 = AVX2+FMA; x86-64 runs anywhere)
#   DEPS_FLAGS arguments of scripts/install-deps.sh (default --build-only: only what
#              the CMake build of the binaries needs; flags it does not know are ignored)
# Environment of the runtime image:
#   ATTN_LISTEN        address:port the server listens on (default 0.0.0.0:50051)
#   ATTN_SERVER_FLAGS  more attention_server flags, space-separated, e.g.
#                      "--workers=4 --compute_threads=2 --drain_seconds=20 --kv_cache_mb=2048"
#   ATTN_HEALTH_TARGET what HEALTHCHECK asks (default 127.0.0.1:<port of ATTN_LISTEN>)
#   OMP_NUM_THREADS    the default of --compute_threads (set it to the CPU limit)
# HEALTHCHECK asks grpc.health.v1.Health through attention_cli; podman keeps
# it only in docker-format images (podman build --format docker).

# ---- build stage: the project's own dependency script and CMake build ----
FROM debian:bookworm-slim AS build
ARG DEPS_FLAGS="--build-only"
ARG JOBS=2
ARG ATTN_ARCH=x86-64-v3
WORKDIR /src
# The dependency layer depends on the script alone: source edits keep it cached.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh ${DEPS_FLAGS} && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DATTN_ARCH=${ATTN_ARCH} \
 && cmake --build /build -j${JOBS} \
 && strip --strip-unneeded /build/bin/attention_server /build/bin/attention_cli \
      /build/bin/attention_loadtest /build/bin/attention_bench

# ---- runtime stage: the shared libraries the binaries link, nothing else ----
FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# libdnnl2 (oneDNN 2.6, with libgomp1 and ocl-icd-libopencl1), libgrpc++1.51
# (with libgrpc29, libprotobuf32, libabsl20220623, libre2-9, libc-ares2, libssl3),
# libcpp-httplib0.11 (the metrics endpoint).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libdnnl2 libgrpc++1.51 libprotobuf32 libabsl20220623 libgomp1 libcpp-httplib0.11 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log \
 && useradd --system --user-group --uid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin attention
COPY --from=build /build/bin/attention_server /build/bin/attention_cli \
     /build/bin/attention_loadtest /build/bin/attention_bench /usr/local/bin/
COPY --chmod=0755 deploy/entrypoint.sh /usr/local/bin/attention-entrypoint
COPY --chmod=0755 deploy/healthcheck.sh /usr/local/bin/attention-healthcheck
ENV ATTN_LISTEN=0.0.0.0:50051 \
    ATTN_SERVER_FLAGS="" \
    ATTN_HEALTH_TARGET=""
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051
# SIGTERM (podman/docker stop, Kubernetes) drains for --drain_seconds (30)
# and exits 0: give stop a longer timeout (podman stop -t 40).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/attention-healthcheck"]
ENTRYPOINT ["/usr/local/bin/attention-entrypoint"]
CMD []
