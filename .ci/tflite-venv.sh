#!/usr/bin/env bash
# Creates (or brings up to date) the venv of the TFLite conformance check, tests/oracle/tflite_check.py:
# onnx2tf 1.29.24 with its own pinned TensorFlow 2.19 / onnx / onnxruntime / ai-edge-litert stack,
# from tests/oracle/requirements-tflite.txt. Idempotent: a venv whose installed set already equals
# the pins (recorded in the venv after a successful install) is left alone.
#
#   .ci/tflite-venv.sh            # venv at $TFLITE_VENV, default /work/venv-tflite (~/.cache/postmerge-venv-tflite without /work)
#   .ci/tflite-venv.sh --bench    # also OpenVINO for bench/tflite_latency.py (bench/tflite_requirements.txt)
#
# Prints the venv's python path on its last line. A first install downloads ~900 MB
# (TensorFlow alone is 645 MB) and took 8 min on the 2-core machine (December 2026).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${TFLITE_VENV:-}" ]]; then
  VENV="$TFLITE_VENV"
elif [[ -d /work && -w /work ]]; then
  VENV=/work/venv-tflite
else
  VENV="$HOME/.cache/postmerge-venv-tflite"
fi
PY="${TFLITE_PYTHON:-}"
REQ=(tests/oracle/requirements-tflite.txt)
if [[ "${1:-}" == "--bench" ]]; then
  REQ+=(bench/tflite_requirements.txt)
fi

if [[ -z "$PY" ]]; then
  # TensorFlow 2.19 has wheels for CPython 3.9-3.12; prefer 3.11 (the version the pins were made with)
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then
      v=$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
      case "$v" in 3.9|3.10|3.11|3.12) PY="$cand"; break ;; esac
    fi
  done
fi
if [[ -z "$PY" ]]; then
  echo "error: no python 3.9-3.12 found for TensorFlow 2.19 (set TFLITE_PYTHON)" >&2
  exit 2
fi

stamp="$VENV/.postmerge-requirements"
want=$(cat "${REQ[@]}" | sha256sum | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "tflite venv up to date: $VENV" >&2
  echo "$VENV/bin/python"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
t0=$(date +%s)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQ[@]/#/-r}"
# pip check: the pinned set must be consistent (a broken pin fails here, not in the middle of a conversion)
"$VENV/bin/python" -m pip check >&2
echo "$want" > "$stamp"
echo "tflite venv installed in $(( $(date +%s) - t0 )) s: $VENV" >&2
echo "$VENV/bin/python"
