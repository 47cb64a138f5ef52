"""The gm-tiny denoiser: a small flow-matching DiT with ACE-Step v1.5's tensor interface.

Inputs (latentd's bundle convention, docs/bundles.md): `hidden_states [B,T,64]`, `timestep [B]`
(t in [0, 1]), `encoder_hidden_states [B,L,D]` (tag embeddings; all-zero rows are padding and
an all-zero condition is the null condition used for classifier-free guidance),
`context_latents [B,T,128]` (source latents, then a mask of 1 where a source exists; zeros for
generation from tags alone). Output `velocity [B,T,64]` for `x_t = t*noise + (1-t)*x0`,
`v = noise - x0`.

Shape: patch 2 over time (T even: the host pads), `depth` blocks of adaLN-zero modulated
self-attention with rotary position embeddings (RoPE: relative positions, no table, so any loop
length runs, and attention can tell a beat's distance from another's; a model trained with
`rope=False` has only the depthwise convolution of each block for order, which sees about
+-16 latent frames and cannot keep a beat, docs/models.md), cross-attention to the tags with
a learned always-present null key (masked padding rows never take weight, and the null
condition is well defined), and an MLP.
The padding/null masks are computed with tensor ops, never with shape-dependent Python
branches, so the ONNX export keeps dynamic B, T and L.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import geometry as g


def timestep_features(t, dim: int):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angle = (t * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


ROPE_THETA = 10000.0


def rotary(x):
    """RoPE over the sequence axis of `x [B, heads, N, hd]` (positions 0..N-1, rotate-half
    pairing). Built from the input's shape with tensor ops, so the export keeps N dynamic."""
    n, hd = x.shape[-2], x.shape[-1]
    half = hd // 2
    freqs = torch.exp(-math.log(ROPE_THETA) * torch.arange(half, dtype=x.dtype, device=x.device) / half)
    pos = torch.arange(n, dtype=x.dtype, device=x.device)
    angle = pos[:, None] * freqs[None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def attention(q, k, v, heads: int, bias=None, rope: bool = False):
    b, n, d = q.shape
    hd = d // heads
    q = q.reshape(b, n, heads, hd).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, hd).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, hd).transpose(1, 2)
    if rope:
        q, k = rotary(q), rotary(k)
    w = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    if bias is not None:
        w = w + bias
    return (w.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, rope: bool):
        super().__init__()
        self.heads = heads
        self.rope = rope
        self.mod = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.mix = nn.Conv1d(dim, dim, 5, padding=2, groups=dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.cross = nn.Linear(dim, dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 3 * dim), nn.GELU(), nn.Linear(3 * dim, dim))

    def forward(self, x, c, text, text_bias):
        s1, g1, b1, s2, g2, b2 = self.mod(c)[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + s1) + b1
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        mixed = self.mix(h.transpose(1, 2)).transpose(1, 2)
        h = attention(q, k, v, self.heads, rope=self.rope) + mixed
        x = x + g1 * self.proj(h)
        k, v = self.kv(text).chunk(2, dim=-1)
        x = x + self.cross(attention(self.q(self.norm2(x)), k, v, self.heads, text_bias))
        h = self.norm3(x) * (1 + s2) + b2
        return x + g2 * self.mlp(h)


class Dit(nn.Module):
    def __init__(self, dim: int = 192, depth: int = 4, heads: int = 4, text_dim: int = 64,
                 patch: int = 2, rope: bool = True):
        super().__init__()
        c = g.LATENT_CHANNELS
        self.patch = patch
        self.inp = nn.Linear(patch * 3 * c, dim)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.text = nn.Linear(text_dim, dim)
        self.null_key = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, rope) for _ in range(depth))
        self.out_mod = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.out_mod.weight)
        nn.init.zeros_(self.out_mod.bias)
        self.out_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.out = nn.Linear(dim, patch * c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dim = dim

    def forward(self, hidden_states, timestep, encoder_hidden_states, context_latents):
        b, t, c = hidden_states.shape
        x = torch.cat([hidden_states, context_latents], dim=-1)
        x = self.inp(x.reshape(b, t // self.patch, self.patch * 3 * c))
        present = (encoder_hidden_states.abs().sum(-1) > 0).float()  # [B, L]
        text = self.text(encoder_hidden_states)
        pooled = (text * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp(min=1.0)
        cond = self.time(timestep_features(timestep, self.dim)) + pooled
        keys = torch.cat([self.null_key.expand(b, 1, self.dim), text], dim=1)
        bias = torch.cat([torch.ones_like(present[:, :1]), present], dim=1)
        bias = ((bias - 1.0) * 1e4)[:, None, None, :]  # 0 where present, -1e4 where padding
        for block in self.blocks:
            x = block(x, cond, keys, bias)
        s, sh = self.out_mod(cond)[:, None].chunk(2, dim=-1)
        y = self.out(self.out_norm(x) * (1 + s) + sh)
        return y.reshape(b, t, c)


def checkpoint_arch(ckpt: dict) -> dict:
    """The `Dit` keyword arguments a `train_dit` checkpoint was trained with; a checkpoint
    saved before they were recorded is gm-tiny's first DiT, without positions."""
    return ckpt.get("arch", {"rope": False})


class TagEmbedding(nn.Module):
    """The text model: tag ids [1, L] int64 -> encoder_hidden_states [1, L, D]."""

    def __init__(self, vocab: int, dim: int = 64):
        super().__init__()
        self.table = nn.Embedding(vocab, dim)
        nn.init.normal_(self.table.weight, std=1.0)

    def forward(self, ids):
        return self.table(ids)
