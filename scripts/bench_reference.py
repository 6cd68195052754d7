#!/usr/bin/env python3
"""PyTorch reference for Glassbox's training benchmark (`cargo bench --bench train_speed`).

Trains nanoGPT's character-level CPU configuration — 4 layers, 4 heads, width 128, context 64,
batch 12, no biases, dropout 0, AdamW lr 1e-3 (100 warm-up steps, cosine to 1e-4 over 2000
steps), beta2 0.99, weight decay 0.1 on matrices, clipping 1.0 — the way nanoGPT's model.py and
train.py do, eager float32 on the CPU, and prints one JSON line:

    {"ms_per_step": ..., "median_ms_per_step": ..., "tokens_per_sec": ..., "val_loss": ...,
     "steps": ..., "torch": "2.x", "threads": N}

Usage: python3 scripts/bench_reference.py --data ../shared/data/tinyshakespeare.txt --steps 200
Needs only `torch` from PyPI (`pip install torch`).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1)."""

    def __init__(self, dim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.n_head = n_head

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (b, nh, t, hs)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias)
        self.ln_2 = LayerNorm(n_embd, bias)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, block_size, n_layer, n_head, n_embd, bias):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head, bias) for _ in range(n_layer)])
        self.ln_f = LayerNorm(n_embd, bias)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def get_lr(it, lr, min_lr, warmup, decay):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a text file (90%% train, 10%% validation)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-batches", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]
    block, batch = 64, 12

    def get_batch(split, generator=None):
        d = train_data if split == "train" else val_data
        ix = torch.randint(len(d) - block, (batch,), generator=generator)
        x = torch.stack([d[i : i + block] for i in ix])
        y = torch.stack([d[i + 1 : i + 1 + block] for i in ix])
        return x, y

    model = GPT(len(chars), block, n_layer=4, n_head=4, n_embd=128, bias=False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
    )

    step_ms = []
    model.train()
    for it in range(args.steps):
        started = time.perf_counter()
        lr = get_lr(it, 1e-3, 1e-4, 100, 2000)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch("train")
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_ms.append((time.perf_counter() - started) * 1000.0)

    model.eval()
    generator = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        losses = [model(*get_batch("val", generator)).item() for _ in range(args.eval_batches)]
    timed = step_ms[5:] if len(step_ms) > 10 else step_ms
    mean_ms = sum(timed) / len(timed)
    print(
        json.dumps(
            {
                "ms_per_step": mean_ms,
                "median_ms_per_step": statistics.median(timed),
                "tokens_per_sec": batch * block / (mean_ms / 1000.0),
                "val_loss": sum(losses) / len(losses),
                "steps": args.steps,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
