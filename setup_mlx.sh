#!/usr/bin/env bash
# Create .venv and install mlx-mangaocr with the right MLX backend. Safe to run again.
#   ./setup_mlx.sh          the library and its command line
#   ./setup_mlx.sh --dev    plus the test tools (pytest, transformers, torch as the oracle), synth's
#                           packages, and on Debian/Ubuntu the Japanese fonts and libraqm synth renders with
# macOS (Apple Silicon): mlx with Metal. Linux: mlx[cuda12] when an NVIDIA GPU answers, else
# mlx[cpu] plus OpenBLAS (Debian/Ubuntu libopenblas0-pthread), which MLX's CPU matmuls need to be fast.
set -euo pipefail
cd "$(dirname "$0")"

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

extras=()
case "$(uname -s)" in
  Darwin)
    [ "$(uname -m)" = arm64 ] || echo "note: MLX needs Apple Silicon (arm64) on macOS" >&2
    ;;
  Linux)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      extras+=(cuda)
    else
      extras+=(cpu)
    fi
    if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then
      if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing OpenBLAS (libopenblas0-pthread) for fast CPU matmuls" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null
      else
        echo "note: install OpenBLAS (e.g. sudo apt-get install libopenblas0-pthread): CPU matmuls are ~30x faster with it" >&2
      fi
    fi
    ;;
esac

if [ "$dev" = 1 ]; then
  extras+=(test)
  if [ "$(uname -s)" = Linux ] && ! { fc-list :lang=ja 2>/dev/null | grep -q . && ldconfig -p 2>/dev/null | grep -q 'libraqm\.so\.0'; }; then
    # synth renders Japanese with system fonts (IPAex) and sets vertical text with libraqm
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "installing Japanese fonts and libraqm (fonts-ipaexfont-gothic, fonts-ipaexfont-mincho, libraqm0) for synth" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-ipaexfont-gothic \
        fonts-ipaexfont-mincho libraqm0 fontconfig >/dev/null
    else
      echo "note: synth needs Japanese fonts and libraqm: sudo apt-get install fonts-ipaexfont-gothic fonts-ipaexfont-mincho libraqm0" >&2
    fi
  fi
  if [ "$(uname -s)" = Linux ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # A pinned CPU build: an open range can pull several GB of CUDA packages on Linux.
    "${pip[@]}" "torch==2.13.0"
  fi
fi

spec="."
if [ ${#extras[@]} -gt 0 ]; then
  spec=".[$(IFS=,; echo "${extras[*]}")]"
fi
"${pip[@]}" -e "$spec"
.venv/bin/python -c "import mlx_mangaocr, mlx.core as mx; print('mlx-mangaocr ready:', mx.default_device())"
