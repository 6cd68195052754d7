#!/usr/bin/env python3
"""Checks that `transformers` loads a Glassbox checkpoint folder and computes the same outputs.

For each folder: `glassbox inspect --dump` writes Glassbox's hidden states, attentions and head
outputs (named as `transformers` names them); this script loads the folder with the
`transformers` class its config.json names, runs the same input ids, and prints the largest
absolute difference per output.

    pip install torch transformers
    python3 scripts/check_transformers.py --glassbox target/debug/glassbox \
        assets/tiny-gpt:"the cat chased the" assets/tiny-bert:"the cat chased the [MASK] ."

A "TEXT [SEP] PAIR" text is sent as a sentence pair (BERT). Exit status 1 if any difference is
above --tolerance (default 1e-4).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file


def check(glassbox, folder, text, tolerance):
    config = json.load(open(os.path.join(folder, "config.json")))
    architecture = config["architectures"][0]
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "dump.safetensors")
        command = [glassbox, "inspect", "--model", folder, "--dump", dump]
        if " [SEP] " in text:
            first, second = text.split(" [SEP] ", 1)
            command += ["--text", first, "--pair", second]
        else:
            command += ["--text", text]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        ours = load_file(dump)

    model_class = getattr(transformers, architecture)
    model = model_class.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = {"input_ids": ours["input_ids"].long().unsqueeze(0)}
    if "token_type_ids" in ours:
        inputs["token_type_ids"] = ours["token_type_ids"].long().unsqueeze(0)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, output_attentions=True)

    theirs = {}
    for i, h in enumerate(out.hidden_states):
        theirs[f"hidden_states.{i}"] = h[0]
    for i, a in enumerate(out.attentions):
        theirs[f"attentions.{i}"] = a[0]
    for name in ["logits", "prediction_logits", "seq_relationship_logits", "start_logits", "end_logits"]:
        value = getattr(out, name, None)
        if value is not None:
            theirs[name] = value[0]

    worst = 0.0
    lines = []
    for name, reference in theirs.items():
        if name not in ours:
            lines.append(f"  {name}: not in the Glassbox dump")
            continue
        diff = (ours[name].float() - reference.float()).abs().max().item()
        worst = max(worst, diff)
        lines.append(f"  {name}: max |diff| {diff:.2e}")
    status = "OK" if worst <= tolerance else "MISMATCH"
    print(f"{folder} as {architecture}: {status}, max |diff| {worst:.2e} over {len(theirs)} outputs")
    print("\n".join(lines))
    return worst <= tolerance


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glassbox", default="target/debug/glassbox")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("cases", nargs="+", help="FOLDER:TEXT")
    args = parser.parse_args()
    ok = True
    for case in args.cases:
        folder, text = case.split(":", 1)
        ok &= check(args.glassbox, folder, text, args.tolerance)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
