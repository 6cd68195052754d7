#!/usr/bin/env python3
"""Checks that `transformers` loads a Glassbox checkpoint folder and computes the same outputs.

For each folder: `glassbox inspect --dump` writes Glassbox's hidden states, attentions and head
outputs (named as `transformers` names them); this script loads the folder with the
`transformers` class its config.json names, runs the same input ids, and prints the largest
absolute difference per output.

    pip install torch transformers
    python3 scripts/check_transformers.py --glassbox target/debug/glassbox \
        assets/tiny-gpt:"the cat chased the" assets/tiny-bert:"the cat chased the [MASK] ." \
        assets/tiny-translator:"the black cat chased the mouse ."

A translator (MarianMTModel) is also checked for AutoTokenizer's ids and for `generate`'s greedy
translation.

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
    if architecture == "MarianMTModel":
        return check_translator(glassbox, folder, text, tolerance, model, ours)
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

    return compare(folder, architecture, theirs, ours, tolerance)


def compare(folder, architecture, theirs, ours, tolerance, extra_lines=()):
    """Prints the largest difference per output; True when all are within `tolerance`."""
    worst = 0.0
    lines = list(extra_lines)
    for name, reference in theirs.items():
        if name not in ours:
            lines.append(f"  {name}: not in the Glassbox dump")
            worst = float("inf")
            continue
        diff = (ours[name].float() - reference.float()).abs().max().item()
        worst = max(worst, diff)
        lines.append(f"  {name}: max |diff| {diff:.2e}")
    status = "OK" if worst <= tolerance else "MISMATCH"
    print(f"{folder} as {architecture}: {status}, max |diff| {worst:.2e} over {len(theirs)} outputs")
    print("\n".join(lines))
    return worst <= tolerance


def check_translator(glassbox, folder, text, tolerance, model, ours):
    """A MarianMTModel: AutoTokenizer's ids, every tensor of the teacher-forced pass on
    Glassbox's greedy translation, and `generate`'s greedy translation."""
    ok = True
    lines = []
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(text)["input_ids"]
    if ids != ours["input_ids"].tolist():
        ok = False
        lines.append(f"  AutoTokenizer ids {ids} != Glassbox {ours['input_ids'].tolist()}")
    else:
        lines.append(f"  AutoTokenizer ({type(tokenizer).__name__}): same {len(ids)} ids")
    input_ids = ours["input_ids"].long().unsqueeze(0)
    decoder_input_ids = ours["decoder_input_ids"].long().unsqueeze(0)
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            decoder_input_ids=decoder_input_ids,
            output_hidden_states=True,
            output_attentions=True,
        )
        generated = model.generate(input_ids, num_beams=1, do_sample=False)
    theirs = {"logits": out.logits[0]}
    for name in ["encoder_hidden_states", "decoder_hidden_states", "encoder_attentions",
                 "decoder_attentions", "cross_attentions"]:
        for i, t in enumerate(getattr(out, name)):
            theirs[f"{name}.{i}"] = t[0]
    ours_translation = json.loads(subprocess.run(
        [glassbox, "translate", "--model", folder, "--text", text, "--beams", "1", "--json"],
        check=True, capture_output=True, text=True).stdout)
    their_ids = generated[0].tolist()[1:]  # after the decoder's start token
    their_text = tokenizer.decode(generated[0], skip_special_tokens=True)
    if their_ids != ours_translation["ids"] or their_text != ours_translation["translation"]:
        ok = False
        lines.append(f"  generate: {their_text!r} {their_ids} != Glassbox "
                     f"{ours_translation['translation']!r} {ours_translation['ids']}")
    else:
        lines.append(f"  generate (greedy): same translation {their_text!r}")
    return compare(folder, "MarianMTModel", theirs, ours, tolerance, lines) and ok


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
