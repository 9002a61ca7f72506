"""The PyTorch peer of Fusion's training-step benchmark (Sources/bench/TrainingStep.swift).

The same text-only model at the same reference sizes: vocabulary 1536, context 256, Llama-style
pre-RMSNorm blocks with QK-norm (RMSNorm over each head), RoPE (half-split), SwiGLU with hidden
F = round_up(8/3 * D, 32), no biases, untied output head; init N(0, 0.02) with the residual output
projections scaled by 1/sqrt(2L); AdamW (lr 3e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on
matrices); float32, 2 threads. Written as a user who wants speed on a CPU writes it: `F.rms_norm`, one
fused QKV projection, `F.scaled_dot_product_attention`, AdamW's fused kernel where this torch has one;
eager by default, or under `torch.compile` (inductor, C++ code generation) with --compile. A step is
zero_grad, forward, cross-entropy, backward, optimizer step, timed exactly as the Swift side: warm-up
steps (two, or until compilation is done), then the median (and the fastest) of N steps.

Prints one line: RESULT size=.. mode=eager|compiled seconds_per_step=.. tokens_per_s=.. peak_rss_bytes=..
best_seconds_per_step=.. compile_seconds=..
"""
import argparse
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {"S": (128, 4, 4, 16), "M": (256, 6, 8, 16), "L": (512, 8, 8, 8)}  # width, layers, heads, batch
VOCABULARY, CONTEXT = 1536, 256


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope(x, cos, sin):  # x [B, T, H, Dh], half-split pairs (x[i], x[i + Dh/2])
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, d, h, f, layers):
        super().__init__()
        self.h, self.dh = h, d // h
        self.attention_norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
        self.wqkv, self.wo = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.q_norm, self.k_norm = RMSNorm(self.dh), RMSNorm(self.dh)
        self.w_gate, self.w_up = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
        self.w_down = nn.Linear(f, d, bias=False)
        for w in (self.wqkv, self.w_gate, self.w_up):
            nn.init.normal_(w.weight, std=0.02)
        for w in (self.wo, self.w_down):
            nn.init.normal_(w.weight, std=0.02 / math.sqrt(2 * layers))

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        y = self.attention_norm(x)
        q, k, v = self.wqkv(y).view(b, t, 3, self.h, self.dh).unbind(2)
        q, k = rope(self.q_norm(q), cos, sin), rope(self.k_norm(k), cos, sin)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.wo(a.transpose(1, 2).reshape(b, t, d))
        y = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(y)) * self.w_up(y))


class Model(nn.Module):
    def __init__(self, d, layers, h):
        super().__init__()
        f = ((8 * d // 3 + 31) // 32) * 32
        self.embedding = nn.Embedding(VOCABULARY, d)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(d, h, f, layers) for _ in range(layers))
        self.final_norm = RMSNorm(d)
        self.head = nn.Linear(d, VOCABULARY, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)
        dh = d // h
        frequencies = 10000.0 ** (-2 * torch.arange(dh // 2, dtype=torch.float32) / dh)
        angles = torch.arange(CONTEXT, dtype=torch.float32)[:, None] * frequencies[None, :]
        self.register_buffer("cos", angles.cos()[None, :, None, :])
        self.register_buffer("sin", angles.sin()[None, :, None, :])

    def forward(self, ids):
        x = self.embedding(ids)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(self.final_norm(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="the step under torch.compile (inductor)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    d, layers, h, b = SIZES[args.size]
    model = Model(d, layers, h)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # one fused pass over every parameter (CPU support since torch 2.4)
        optimizer = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.randint(0, VOCABULARY, (b, CONTEXT + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def loss_of(inputs, targets):
        logits = model(inputs)
        return F.cross_entropy(logits.reshape(-1, VOCABULARY), targets.reshape(-1))

    forward = torch.compile(loss_of) if args.compile else loss_of

    def step():
        optimizer.zero_grad(set_to_none=True)
        forward(inputs, targets).backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # compiles the forward and backward graphs under --compile
    compile_seconds = time.perf_counter() - start if args.compile else 0.0
    step()
    step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    seconds = times[len(times) // 2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # The fastest step too: on a shared machine it is the least disturbed one (the bench compares both).
    print(f"RESULT size={args.size} mode={'compiled' if args.compile else 'eager'} seconds_per_step={seconds} "
          f"tokens_per_s={b * CONTEXT / seconds} peak_rss_bytes={peak} best_seconds_per_step={times[0]} "
          f"compile_seconds={compile_seconds}")


if __name__ == "__main__":
    main()
