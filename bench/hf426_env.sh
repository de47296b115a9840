#!/usr/bin/env bash
# Creates the transformers 4.26.0 environment (the version the official IDGenRec code pins) that
# bench/hf426_parity.py drives through bench/hf426_generate.py; separate from the project venv.
#
#   bench/hf426_env.sh [DIR]     # default: ../hf426 beside the repository
#   python bench/hf426_parity.py --hf_python DIR/bin/python ...
#
# CPU torch from PyTorch's index (TORCH_INDEX to override); numpy < 2 for torch/transformers of
# that age; sentencepiece for the slow T5 tokenizer; safetensors to read `save_hf_t5` folders.
set -euo pipefail
DIR="${1:-$(cd "$(dirname "$0")/../.." && pwd)/hf426}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
python3 -m venv "$DIR"
"$DIR/bin/pip" install --upgrade pip
"$DIR/bin/pip" install --extra-index-url "$TORCH_INDEX" torch==2.13.0 transformers==4.26.0 \
  tokenizers==0.13.3 'numpy<2' sentencepiece safetensors
"$DIR/bin/python" -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
