"""CIFAR-style residual network (He et al. 2016) for 1-D signals and 2-D images, with its regularizers' places.

[input slot] -> stem conv3x3 (16 maps) [-> BN -> act] -> 3 stages of n basic blocks, widths 16k, 32k, 64k
(k = model.widen), stride 2 at the start of stages 2 and 3, a [stage slot] after each -> [BN -> act, with
pre-activation] -> global average pool -> [head slot] -> Linear.

- model.depth = 6n+2 counts the layers as He et al. do (ResNet-20: n = 3, ResNet-110: n = 18); 6n+4 as
  Zagoruyko & Komodakis do for wide ResNets, who also count the projection shortcuts (WRN-16-8: n = 2,
  WRN-28-10: n = 4). The two never coincide (2 vs 4 modulo 6), so both names mean what their papers mean.
- Basic block, post-activation (He et al. 2016a): conv-BN-act-[branch slot]-conv-BN, + shortcut, act.
  model.preact=true (He et al. 2016b, "Identity mappings"; the WRN block): BN-act-conv-BN-act-[branch
  slot]-conv, + shortcut. model.batchnorm=false leaves the BNs out (the convolutions get biases).
- Shortcut: the identity, or a 1x1 convolution (+ BN, post-activation) where width or stride changes
  (option B; with pre-activation it reads the pre-activated input, as WRN does).
- Regularizers, each in its paper's place: the branch slot between a block's convolutions (dropout.p_conv,
  else p: WRN's dropout; DropBlock in the last two stages), the stage slot (spatial dropout), the head slot
  before the classifier (dropout.p) and stochastic depth on each block's branch before the sum (reg.drop_path,
  rising linearly over the blocks).
"""

from __future__ import annotations

from torch import Tensor, nn

from regbench.core.errors import ConfigError
from regbench.models.blocks import ACTIVATIONS, NORMS, activation_name, dropout_slot
from regbench.regularizers import Slot
from regbench.regularizers.drop_path import block_rates, drop_path_module

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
STEM_WIDTH = 16
STAGE_WIDTHS = (16, 32, 64)  # times model.widen


def blocks_per_stage(depth: int) -> int:
    """n of a depth of 6n+2 (He et al.) or 6n+4 (Zagoruyko & Komodakis); ConfigError for any other depth."""
    for extra in (2, 4):
        if depth >= 6 + extra and (depth - extra) % 6 == 0:
            return (depth - extra) // 6
    raise ConfigError(f"model.depth={depth} is not valid for model=resnet; valid: 6n+2 layers (8, 14, 20, 32, 56, "
                      "110) or 6n+4 as wide ResNets count them (10, 16, 22, 28)")


class BasicBlock(nn.Module):
    def __init__(self, cfg, dims: int, c_in: int, c_out: int, stride: int, stage: int, drop_path: float):
        super().__init__()
        bn, self.preact = cfg.model.batchnorm, cfg.model.preact
        conv, act = _CONV[dims], ACTIVATIONS[activation_name(cfg)]

        def norm(width: int) -> nn.Module:
            return NORMS[dims](width) if bn else nn.Identity()

        self.norm1 = norm(c_in if self.preact else c_out)
        self.conv1 = conv(c_in, c_out, 3, stride, 1, bias=not bn)
        self.act1 = act()
        self.norm2 = norm(c_out)
        self.act2 = act()
        self.drop = dropout_slot(cfg, Slot("conv", dims, stage, "branch"))
        self.conv2 = conv(c_out, c_out, 3, 1, 1, bias=not bn)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            projection = conv(c_in, c_out, 1, stride, bias=not bn)
            self.shortcut = projection if self.preact else nn.Sequential(projection, norm(c_out))
        self.drop_path = drop_path_module(drop_path)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, *spatial) -> (N, c_out, *spatial / stride)
        if self.preact:
            o = self.act1(self.norm1(x))
            shortcut = x if self.shortcut is None else self.shortcut(o)
            y = self.conv2(self.drop(self.act2(self.norm2(self.conv1(o)))))
            return shortcut + self.drop_path(y)
        y = self.norm2(self.conv2(self.drop(self.act1(self.norm1(self.conv1(x))))))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.act2(shortcut + self.drop_path(y))


class ResNet(nn.Module):
    def __init__(self, cfg, input_shape: tuple, num_classes: int):
        super().__init__()
        dims = len(input_shape) - 1  # 1 for (C, L), 2 for (C, H, W)
        n = blocks_per_stage(cfg.model.depth)
        bn, preact = cfg.model.batchnorm, cfg.model.preact
        act = ACTIVATIONS[activation_name(cfg)]
        self.input_drop = dropout_slot(cfg, Slot("input", dims))
        stem = [_CONV[dims](input_shape[0], STEM_WIDTH, 3, 1, 1, bias=not bn)]
        if not preact:  # pre-activation: the first block normalises and activates the stem's output
            stem += [NORMS[dims](STEM_WIDTH), act()] if bn else [act()]
        self.stem = nn.Sequential(*stem)
        rates = iter(block_rates(float(cfg.reg.drop_path), 3 * n))
        stages, width = [], STEM_WIDTH
        for s, base in enumerate(STAGE_WIDTHS):
            out = base * cfg.model.widen
            blocks = [BasicBlock(cfg, dims, width if b == 0 else out, out, 2 if s > 0 and b == 0 else 1, s, next(rates))
                      for b in range(n)]
            stages.append(nn.Sequential(*blocks, dropout_slot(cfg, Slot("conv", dims, s, "stage"))))
            width = out
        self.stages = nn.Sequential(*stages)
        final = [NORMS[dims](width), act()] if preact and bn else [act()] if preact else []
        self.final = nn.Sequential(*final)  # pre-activation: the last block's sum is normalised and activated
        self.head_drop = dropout_slot(cfg, Slot("hidden", 0, 0, "head"))
        self.classifier = nn.Linear(width, num_classes)
        for m in self.modules():  # He et al.'s initialisation (torchvision's ResNets too)
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:  # (N, C, L) or (N, C, H, W) -> logits (N, num_classes)
        x = self.final(self.stages(self.stem(self.input_drop(x))))
        return self.classifier(self.head_drop(x.flatten(2).mean(2)))  # global average pool
