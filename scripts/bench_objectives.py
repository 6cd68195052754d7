#!/usr/bin/env python3
"""PyTorch reference for `cargo bench --bench objective_speed`: one objective's training step in
`transformers`, eager float32 on the CPU, on the model Glassbox starts from.

The benchmark exports Glassbox's model before its first step (config.json and model.safetensors,
in `transformers`' format) and passes the padded batch shape its steps ran on. This script loads
the same weights into the matching `transformers` class, draws random batches of that shape,
and trains with AdamW (weight decay on matrices, gradient clipping at 1.0) as Glassbox does.
Dropout is set to 0: Glassbox trains without it. Prints one JSON line:

    {"median_ms_per_step": ..., "ms_per_step": ..., "first_loss": ..., "mean_loss": ...,
     "torch": "2.x", "transformers": "5.x", "threads": N}

Usage:
    python3 scripts/bench_objectives.py --objective masked-lm --model DIR --batch 32 --seq 64 \
        --steps 30 [--target-len T] [--lr 1e-3]
Needs `torch` and `transformers` from PyPI.
"""
import argparse
import json
import statistics
import time

import torch


def build(objective, model_dir):
    import transformers as tf

    classes = {
        "masked-lm": tf.BertForPreTraining,
        "classification": tf.BertForSequenceClassification,
        "qa": tf.BertForQuestionAnswering,
        "generation": tf.GPT2LMHeadModel,
        "causal-lm": tf.GPT2LMHeadModel,
        "seq2seq": tf.MarianMTModel,
    }
    config = tf.AutoConfig.from_pretrained(model_dir)
    for name in (
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
        "dropout",
        "attention_dropout",
        "activation_dropout",
        "classifier_dropout",
    ):
        if hasattr(config, name):
            setattr(config, name, 0.0)
    model = classes[objective].from_pretrained(model_dir, config=config, dtype=torch.float32)
    return model, config


def batch_for(objective, config, batch, seq, target_len, generator):
    """Random inputs and targets of the shapes Glassbox's steps ran on."""
    vocab = config.vocab_size
    ids = torch.randint(5, vocab, (batch, seq), generator=generator)
    if objective == "masked-lm":
        labels = torch.full((batch, seq), -100)
        masked = torch.rand((batch, seq), generator=generator) < 0.15
        labels[masked] = ids[masked]
        token_types = torch.zeros((batch, seq), dtype=torch.long)
        token_types[:, seq // 2 :] = 1
        return dict(
            input_ids=ids,
            token_type_ids=token_types,
            labels=labels,
            next_sentence_label=torch.randint(0, 2, (batch,), generator=generator),
        )
    if objective == "classification":
        return dict(
            input_ids=ids,
            labels=torch.randint(0, config.num_labels, (batch,), generator=generator),
        )
    if objective == "qa":
        start = torch.randint(1, seq - 1, (batch,), generator=generator)
        return dict(input_ids=ids, start_positions=start, end_positions=start)
    if objective == "generation":
        # Completion-only loss: the first half (the prompt) is not scored.
        labels = ids.clone()
        labels[:, : seq // 2] = -100
        return dict(input_ids=ids, labels=labels)
    if objective == "causal-lm":
        return dict(input_ids=ids, labels=ids)
    if objective == "seq2seq":
        labels = torch.randint(5, vocab, (batch, target_len), generator=generator)
        return dict(input_ids=ids, labels=labels)
    raise SystemExit(f"unknown objective {objective}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", required=True)
    parser.add_argument("--model", required=True, help="a transformers checkpoint folder")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq", type=int, required=True)
    parser.add_argument("--target-len", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import transformers

    torch.manual_seed(args.seed)
    model, config = build(args.objective, args.model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.99),
    )
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    step_ms, losses = [], []
    for _ in range(args.steps):
        inputs = batch_for(args.objective, config, args.batch, args.seq, args.target_len, generator)
        started = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step_ms.append((time.perf_counter() - started) * 1000.0)
    # The first steps warm caches and allocators, as on the Glassbox side.
    timed = step_ms[5:] if len(step_ms) > 10 else step_ms
    print(
        json.dumps(
            {
                "median_ms_per_step": statistics.median(timed),
                "ms_per_step": sum(timed) / len(timed),
                "first_loss": losses[0],
                "mean_loss": sum(losses) / len(losses),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
