#!/usr/bin/env bash
# Trains the shipped tiny models from their recipes and refreshes assets/tiny-gpt,
# assets/tiny-bert, assets/tiny-bert-qa (tiny-bert fine-tuned for question answering, so it comes
# after tiny-bert) and assets/tiny-translator: the Hugging Face folder (config.json,
# model.safetensors, tokenizer.json, ...), the training curve (metrics.csv) and first_steps.json,
# the first losses that tests/train/assets.rs replays; for the translator also heldout.tsv, the
# pairs its run held out (`glassbox translate --model assets/tiny-translator --test
# assets/tiny-translator/heldout.tsv`). Deterministic: the same recipe gives the same model.
#
#   scripts/make-assets.sh [tiny-gpt] [tiny-bert] [tiny-bert-qa] [tiny-translator]
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(tiny-gpt tiny-bert tiny-bert-qa tiny-translator)
glassbox=${GLASSBOX:-target/release/glassbox}
[ -x "$glassbox" ] || cargo build --release
for name in "${names[@]}"; do
    # --overwrite: replace an earlier run in runs/$name and the shipped files in assets/$name.
    # A recipe that starts from a trained model (model.init_from) is a fine-tune.
    command=train
    if grep -q '^init_from' "assets/$name/recipe.toml"; then command=finetune; fi
    "$glassbox" "$command" --config "assets/$name/recipe.toml" --out "runs/$name" \
        --export "assets/$name" --overwrite
    cp "runs/$name/metrics.csv" "assets/$name/metrics.csv"
    if [ -f "runs/$name/heldout.tsv" ]; then cp "runs/$name/heldout.tsv" "assets/$name/heldout.tsv"; fi
    python3 - "$name" <<'PY'
import json, sys
name = sys.argv[1]
records = [json.loads(line) for line in open(f"runs/{name}/metrics.jsonl")]
steps = [r for r in records if r["kind"] == "step"][:5]
evals = [r for r in records if r["kind"] == "eval"]
json.dump(
    {
        "recipe": "recipe.toml",
        "note": "train losses of the recipe's first steps; tests/train/assets.rs replays them",
        "train_losses": [r["train_loss"] for r in steps],
        "final_val_loss": evals[-1]["val_loss"] if evals else None,
        "final_metrics": evals[-1]["metrics"] if evals else None,
    },
    open(f"assets/{name}/first_steps.json", "w"),
    indent=2,
)
PY
done
ls -la "${names[@]/#/assets/}"
