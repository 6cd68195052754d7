#!/usr/bin/env bash
# Installs Hugging Face `transformers` (tokenizers only, no PyTorch) for the interop test in
# tests/cli/faults.rs, which checks that a folder Glassbox writes gives the same input ids and
# segment ids in `transformers`' AutoTokenizer. Fails soft: without it that half of the test
# says it was skipped and why.
set -u
if python3 -c "import transformers, tokenizers" >/dev/null 2>&1; then
  echo "transformers already installed"
  exit 0
fi
# --no-deps: transformers' full requirements pull in packages (kernels) that need not be there
# for tokenizers; these are the ones AutoTokenizer needs.
if python3 -m pip install --quiet --no-deps "transformers==5.24.0" \
  && python3 -m pip install --quiet huggingface_hub tokenizers safetensors numpy pyyaml regex \
       packaging tqdm filelock; then
  echo "transformers ready"
else
  echo "could not install transformers from PyPI; the interop test will skip its transformers half" >&2
fi
exit 0
