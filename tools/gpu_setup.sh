# Sourced by the GPU scripts: the pytorch-msssim wheel from .whl/ where the machine lacks it, unbuffered Python
# output, and which GPU this is.
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import pytorch_msssim" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
