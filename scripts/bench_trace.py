#!/usr/bin/env python3
"""PyTorch reference for `cargo bench --bench trace_speed`: load a checkpoint folder into
`transformers` and run the forward pass with every attention map and hidden state returned
(`output_attentions=True`, `output_hidden_states=True`, eager attention, float32, no grad),
three times on the same ids, each result dropped before the next. Prints one JSON line:

    {"load_s": ..., "base_mib": ..., "load_peak_mib": ..., "forward_ms": ..., "peak_mib": ...}

Memory is the process's peak resident size (`ru_maxrss`), which includes Python and PyTorch
themselves (`base_mib`, read before loading).

Usage: python3 scripts/bench_trace.py --model DIR --tokens 512
"""
import argparse
import json
import resource
import statistics
import time

import torch


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", type=int, required=True)
    args = parser.parse_args()

    import transformers as tf

    base = peak_mib()
    config = tf.AutoConfig.from_pretrained(args.model)
    cls = tf.GPT2LMHeadModel if config.model_type == "gpt2" else tf.BertForMaskedLM
    started = time.perf_counter()
    model = cls.from_pretrained(args.model, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - started
    load_peak = peak_mib()
    vocab = config.vocab_size
    # The same ids as the Glassbox side (benches/trace_speed.rs).
    ids = [((i * 2654435761) % 2**32 >> 7) % (vocab - 10) + 5 for i in range(args.tokens)]
    input_ids = torch.tensor([ids])
    times = []
    with torch.no_grad():
        for _ in range(3):
            started = time.perf_counter()
            out = model(input_ids, output_attentions=True, output_hidden_states=True)
            times.append((time.perf_counter() - started) * 1000.0)
            del out
    print(
        json.dumps(
            {
                "load_s": load_s,
                "base_mib": base,
                "load_peak_mib": load_peak,
                "forward_ms": statistics.median(times),
                "peak_mib": peak_mib(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
