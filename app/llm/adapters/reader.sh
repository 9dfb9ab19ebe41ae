#!/usr/bin/env bash
# The shipped reader (callx-reader.gguf): reads the definitions of lists the default adapter
# was not trained on (docs/adapter-experiments.md, "A reader trained on many lists"). From the
# repository root, with the finetune extra:
#   bash app/llm/adapters/reader.sh [OUTPUT_DIR] [--more-lists] [--more-calls] [INDUSTRY ...]
# (about 35 minutes alone on 2 cores; 45-60 with --more-calls or --more-lists). With industries, a
# reader of those of the twelve only (the dev folds were six each); with --more-lists, each call
# in its industry's two more lists too (candidate R2); with --more-calls, the eight industries of
# data/world/more_calls/ too, whatever industries are named (candidate R3).
set -euo pipefail
out=build/reader
if [[ $# -gt 0 && $1 != -* ]]; then out=$1; shift; fi
python -m app.finetune.reader_recipe "$out" "$@"
train=()
for f in "$out"/*.jsonl; do train+=(--train "$f@$(cat "${f%.jsonl}.taxonomy")"); done
# From the base model: rank 8, alpha 16, peak rate 2e-4, one pass of 8-example steps.
callx finetune --reads-definitions "${train[@]}" --rank 8 --alpha 16 --lr 2e-4 --epochs 1 \
  --checkpoint-every 10 --resume --output "$out/callx-reader.gguf"
echo "rebuilt: $out/callx-reader.gguf (card: $out/callx-reader.json)"
