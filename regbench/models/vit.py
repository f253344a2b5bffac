"""A small vision transformer (Dosovitskiy et al. 2021) for 1-D signals and 2-D images.

[input slot] -> patch embedding (a conv with kernel = stride = model.patch: 2-D patches, or 1-D segments)
-> class token + learned position embedding -> model.depth pre-norm blocks -> LayerNorm -> the class
token -> [head slot] -> Linear.

Block (pre-norm, as ViT and DeiT):
    x = x + drop_path(proj_drop(proj(attention(LN(x)))))
    x = x + drop_path(mlp_drop(fc2(mlp_drop(act(fc1(LN(x)))))))
Attention is written out (scores, softmax, then the attention-dropout slot, then the values): a fused
kernel (F.scaled_dot_product_attention) takes one float dropout rate and draws from torch's global
generator, so it could give neither each cell of a stack its own rate (a 0-d tensor) nor its own stream.

Regularizers, as timm's VisionTransformer places them: dropout.p_attn on the attention weights
(attn_drop), dropout.p on the attention output and in the MLP (residual dropout: proj_drop, drop after
fc1 and fc2) and before the classifier (timm's pos_drop, after the position embedding, is left out:
dropout.p_input drops the input instead), reg.drop_path on both residual branches of every block (rising
linearly over the blocks). Position embedding and class token are no unit's incoming weights: they are
declared `not_weights` (no weight decay, L1 or max-norm; regularizers/penalties.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from regbench.core.errors import ConfigError
from regbench.models.blocks import ACTIVATIONS, activation_name, dropout_slot
from regbench.regularizers import Slot
from regbench.regularizers.drop_path import block_rates, drop_path_module

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
INIT_STD = 0.02  # truncated-normal std of linear layers and embeddings (ViT, timm)


class Attention(nn.Module):
    def __init__(self, cfg, dim: int, heads: int, block: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = dropout_slot(cfg, Slot("attn", 0, block))
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = dropout_slot(cfg, Slot("hidden", 0, block, "branch"))

    def forward(self, x: Tensor) -> Tensor:  # (N, T, D) -> (N, T, D)
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (N, H, T, d/H)
        weights = self.attn_drop((q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)).softmax(-1))  # (N, H, T, T)
        return self.proj_drop(self.proj((weights @ v).transpose(1, 2).reshape(n, t, d)))


class Block(nn.Module):
    def __init__(self, cfg, dim: int, block: int, drop_path: float):
        super().__init__()
        hidden = round(dim * cfg.model.mlp_ratio)  # at least 1: rules/validate.py
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(cfg, dim, cfg.model.heads, block)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), ACTIVATIONS[activation_name(cfg)](),
                                 dropout_slot(cfg, Slot("hidden", 0, block, "branch")), nn.Linear(hidden, dim),
                                 dropout_slot(cfg, Slot("hidden", 0, block, "branch")))
        self.drop_path = drop_path_module(drop_path)

    def forward(self, x: Tensor) -> Tensor:  # (N, T, D)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    not_weights = ("pos_embed", "cls_token")  # no unit's incoming weights: no decay, L1 or max-norm

    def __init__(self, cfg, input_shape: tuple, num_classes: int):
        super().__init__()
        m = cfg.model
        channels, *spatial = input_shape
        if any(s % m.patch for s in spatial):
            fits = [p for p in range(1, min(spatial) + 1) if all(s % p == 0 for s in spatial)]
            raise ConfigError(f"model.patch={m.patch} does not divide the input's {'x'.join(map(str, spatial))} "
                              f"positions; valid: model.patch={'|'.join(map(str, fits))}")
        tokens = math.prod(s // m.patch for s in spatial)
        self.input_drop = dropout_slot(cfg, Slot("input", len(spatial)))
        self.patch_embed = _CONV[len(spatial)](channels, m.dim, m.patch, stride=m.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, m.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, m.dim))
        rates = block_rates(float(cfg.reg.drop_path), m.depth)
        self.blocks = nn.Sequential(*(Block(cfg, m.dim, b, rates[b]) for b in range(m.depth)))
        self.norm = nn.LayerNorm(m.dim)
        self.head_drop = dropout_slot(cfg, Slot("hidden", 0, 0, "head"))
        self.classifier = nn.Linear(m.dim, num_classes)
        for p in (self.cls_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=INIT_STD)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=INIT_STD)
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, L) or (N, C, H, W) -> logits (N, num_classes)
        x = self.patch_embed(self.input_drop(x)).flatten(2).transpose(1, 2)  # (N, T, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.classifier(self.head_drop(x[:, 0]))
