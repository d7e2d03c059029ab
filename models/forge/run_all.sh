#!/usr/bin/env bash
# Reproduce everything under models/assist-moe/ and tests/fixtures/ (offline tooling).
#   models/forge/run_all.sh            # full run (~25 min on 2 CPU cores: 20 of them training)
#   TRAIN_MINUTES=5 models/forge/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${VENV:-.venv-forge}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r models/forge/requirements.txt
fi
PY="$VENV/bin/python"
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
cp -f "${CATALOGUE:-../shared/catalogue/tools.json}" models/assist-moe/tools.json 2>/dev/null || true  # refresh if available
"$PY" models/forge/make_fixtures.py
"$PY" models/forge/gen_corpus.py
"$PY" models/forge/train.py --minutes "${TRAIN_MINUTES:-20}"
"$PY" models/forge/evaluate.py --teacher-forced --decode-failures 150
gzip -9 -n -c models/assist-moe/data/train.jsonl > models/assist-moe/data/train.jsonl.gz
echo "done: models/assist-moe/EVAL.md"
