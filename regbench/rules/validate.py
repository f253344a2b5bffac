"""`validate`: what a run config must pass before anything is written, as a table of rules.

RULES maps a key to its rule: a choice (a list here, or a registry's names), a range, a lower bound or
an odd size. One loop applies them, so every message has the same form (`key=value is out of range;
valid values: [0, 1)`) and a new key gets its check by one line. What involves several keys or a
registry's own check (a dropout type's combinations, the per-layer rates against the hidden layers, the
seeds' bounds, the protocol) follows as small functions, each naming the keys it reads.
All raise ConfigError (one line, exit 2); inf and nan are refused for every float key first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from regbench.core.errors import ConfigError
from regbench.core.model_kinds import LAYERED_MODELS, RESIDUAL_MODELS
from regbench.rules import protocol
from regbench.rules.config import (
    DEVICES,
    EVAL_MODES,
    FLOAT_KEYS,
    MODELS,
    OPTIMIZERS,
    PLACEMENTS,
    REPORT_FORMATS,
    SCHEDULES,
    check_results_dir,
    check_sweep_name,
    refuse_unknown_keys,
)

if TYPE_CHECKING:
    from omegaconf import DictConfig

MAX_SEED = 2**64 - 1  # torch.manual_seed takes [-2**63, 2**64); a negative seed aliases a positive one, so >= 0


@dataclass(frozen=True)
class OneOf:
    """A name from `choices`: a tuple, or a function giving one (a registry's names, read when checked)."""

    choices: Any

    def check(self, key: str, value: Any) -> None:
        choices = self.choices() if callable(self.choices) else self.choices
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; valid choices: {', '.join(map(str, choices))}")


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = True

    def check(self, key: str, value: float) -> None:
        ok_lo = value > self.lo if self.lo_open else value >= self.lo
        ok_hi = value < self.hi if self.hi_open else value <= self.hi
        if not (ok_lo and ok_hi):
            interval = f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
            raise ConfigError(f"{key}={value!r} is out of range; valid values: {interval}")


@dataclass(frozen=True)
class AtLeast:
    lo: float

    def check(self, key: str, value: float) -> None:
        if value < self.lo:
            raise ConfigError(f"{key}={value!r} is out of range; valid values: >= {self.lo}")


@dataclass(frozen=True)
class Odd:
    """An odd integer >= 1 (a kernel or block that centres on a position and keeps the map's size)."""

    def check(self, key: str, value: int) -> None:
        if value < 1 or value % 2 == 0:
            raise ConfigError(f"{key}={value} is not valid; valid values: odd integers >= 1")


def _activations():
    from regbench.models import ACTIVATIONS

    return sorted(ACTIVATIONS)


@dataclass(frozen=True)
class Registered:
    """A name in a registry, given as a function returning it (imported when checked); the registry's own
    lookup says what is wrong (`unknown dropout 'x'; valid choices: ...`) and finds plugins first."""

    registry: Any

    def check(self, key: str, value: str) -> None:
        self.registry().get(value)


def _datasets():
    from regbench.data import DATASETS

    return DATASETS


def _dropouts():
    from regbench.regularizers import DROPOUTS

    return DROPOUTS


def _augments():
    from regbench.data.augment import AUGMENTS

    return AUGMENTS


def _masks():
    from regbench.regularizers.dropconnect import MASKS

    return MASKS


def _dropblock_schedules():
    from regbench.regularizers.dropblock import SCHEDULES as DROPBLOCK_SCHEDULES

    return DROPBLOCK_SCHEDULES


RATE = Range(0, 1)  # a drop rate: 1 would drop everything (and divide by zero in the inverted forms)
POSITIVE = Range(0, math.inf, lo_open=True)

# key -> rule. A None value (an optional key left unset) passes; a list has each of its values checked.
RULES: dict[str, Any] = {
    "dataset.name": Registered(_datasets),
    "model.name": OneOf(MODELS),
    "dropout.name": Registered(_dropouts),
    "optim.name": OneOf(OPTIMIZERS),
    "optim.schedule": OneOf(SCHEDULES),
    "trainer.device": OneOf(DEVICES),
    "report_format": OneOf(REPORT_FORMATS),
    "dataset.val_fraction": Range(0, 1, lo_open=True),
    "dataset.train_size": AtLeast(1),
    "dropout.p": RATE,
    "dropout.p_input": RATE,
    "dropout.p_conv": RATE,
    "dropout.per_layer": RATE,
    "dropout.p_attn": RATE,
    "reg.drop_path": RATE,
    "dropout.placement": OneOf(PLACEMENTS),
    "dropout.schedule": OneOf(_dropblock_schedules),
    "dropout.mask": OneOf(_masks),
    "dropout.block_size": Odd(),
    "reg.l1": AtLeast(0),
    "reg.max_norm": POSITIVE,
    "reg.label_smoothing": Range(0, 1),
    "eval.mc_samples": AtLeast(0),
    "eval.ece_bins": AtLeast(1),
    "eval.mode": OneOf(EVAL_MODES),
    "optim.lr": POSITIVE,
    "optim.weight_decay": AtLeast(0),
    "optim.momentum": Range(0, 1),
    "optim.step_size": AtLeast(1),
    "optim.gamma": Range(0, 1, lo_open=True, hi_open=True),  # 1 would leave the lr where it is at every drop
    "optim.warmup_epochs": AtLeast(0),
    "trainer.epochs": AtLeast(1),
    "trainer.batch_size": AtLeast(1),
    "trainer.train_eval_size": AtLeast(1),
    "trainer.patience": AtLeast(1),
    "trainer.threads": AtLeast(1),
    "trainer.min_delta": AtLeast(0),
    "model.hidden": AtLeast(1),
    "model.channels": AtLeast(1),
    "model.kernel_size": Odd(),
    "model.depth": AtLeast(1),
    "model.widen": AtLeast(1),
    "model.dim": AtLeast(1),
    "model.heads": AtLeast(1),
    "model.mlp_ratio": POSITIVE,
    "model.patch": AtLeast(1),
    "optim.milestones": AtLeast(1),
    "model.activation": OneOf(_activations),
    "augment.ops": Registered(_augments),
}


def apply_rules(cfg: DictConfig, rules: dict[str, Any] = RULES) -> None:
    from omegaconf import OmegaConf

    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if OmegaConf.is_list(value) or isinstance(value, list | tuple):
            for i, item in enumerate(value):
                rule.check(f"{key}[{i}]" if isinstance(rule, Range | AtLeast | Odd) else key, item)
        else:
            rule.check(key, value)


def validate(cfg: DictConfig) -> None:
    """Check keys, names, ranges and combinations. Raises ConfigError with a one-line message."""
    refuse_unknown_keys(cfg)
    _finite_floats(cfg)
    apply_rules(cfg)
    _seeds(cfg)
    protocol.check(cfg.trainer)
    _margin(cfg)
    check_results_dir(cfg.results_dir)
    check_sweep_name(cfg.sweep_name)
    _per_layer_rates(cfg)
    _model_has_room(cfg)
    _batchnorm_batch(cfg)
    _milestones(cfg)
    from regbench.data.augment_ops import check_params

    check_params(cfg.augment)


def _finite_floats(cfg: DictConfig) -> None:
    """inf and nan pass every `>=` / `<` range check (nan compares false, inf exceeds any open bound only
    where one is given): one rule for every float key of the schema, lists included."""
    from omegaconf import OmegaConf

    for key in FLOAT_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        values = value if OmegaConf.is_list(value) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"{key}={value} is not valid; valid values: finite numbers")


def _seeds(cfg: DictConfig) -> None:
    """seed and dataset.split_seed: the seeds torch accepts, without negative aliases."""
    from omegaconf import OmegaConf

    for key in ("seed", "dataset.split_seed"):
        seed = OmegaConf.select(cfg, key)
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{key}={seed} is out of range; valid values: 0..{MAX_SEED} (the seeds torch accepts, "
                              "without negative aliases)")


def _margin(cfg: DictConfig) -> None:
    """margin: equivalence margins in the report's metrics (rules/verdicts.py)."""
    if cfg.get("margin") is not None:
        from regbench.rules.verdicts import METRICS, parse_margins  # numpy only: a run does not import the report

        parse_margins(str(cfg.margin), METRICS, "test.acc", name="margin")


def _per_layer_rates(cfg: DictConfig) -> None:
    """dropout.per_layer: one rate per hidden layer of model.hidden."""
    per_layer = cfg.dropout.per_layer  # on other models the key cannot act: rules/active.py says so
    if per_layer is not None and cfg.model.name in LAYERED_MODELS and len(per_layer) != len(cfg.model.hidden):
        raise ConfigError(f"dropout.per_layer has {len(per_layer)} rates but model.hidden has "
                          f"{len(cfg.model.hidden)} layers; valid: one rate per hidden layer")


def _batchnorm_batch(cfg: DictConfig) -> None:
    """BatchNorm cannot normalise a batch of one: training skips such a batch (engine/loop.py), so at
    trainer.batch_size=1 no step would ever train."""
    if cfg.trainer.batch_size < 2 and cfg.model.batchnorm and cfg.model.name != "vit":
        raise ConfigError(f"trainer.batch_size={cfg.trainer.batch_size} with BatchNorm (model={cfg.model.name}, "
                          "model.batchnorm=true): a batch of one cannot be normalised, so no step would train; "
                          "valid: trainer.batch_size >= 2, or model.batchnorm=false")


def _model_has_room(cfg: DictConfig) -> None:
    """model.hidden / model.channels against what the model and dropout.p need."""
    if cfg.model.name == "mlp" and not cfg.model.hidden and cfg.dropout.name != "none" and cfg.dropout.p > 0:
        raise ConfigError(f"dropout.p={cfg.dropout.p} has no hidden layer to act on (model.hidden=[]); "
                          "valid: dropout.p=0 (dropout.p_input still applies) or a non-empty model.hidden")
    if cfg.model.name == "cnn" and not cfg.model.channels:
        raise ConfigError("model.channels=[] is not valid for model=cnn; valid values: a non-empty list")
    if cfg.model.name in RESIDUAL_MODELS and cfg.model.depth is None:
        raise ConfigError(f"model.depth=null is not valid for model={cfg.model.name}; valid: "
                          + ("6n+2 or 6n+4 layers, e.g. 20" if cfg.model.name == "resnet" else "blocks >= 1, e.g. 4"))
    if cfg.model.name == "resnet":
        from regbench.models.resnet import blocks_per_stage

        blocks_per_stage(cfg.model.depth)
    if cfg.model.name == "vit" and round(cfg.model.dim * cfg.model.mlp_ratio) < 1:
        raise ConfigError(f"model.mlp_ratio={cfg.model.mlp_ratio} gives the blocks' MLPs no hidden unit (model.dim="
                          f"{cfg.model.dim} x {cfg.model.mlp_ratio}); valid: model.mlp_ratio >= 1/model.dim = "
                          f"{1 / cfg.model.dim:g}")
    if cfg.model.name == "vit" and cfg.model.dim % cfg.model.heads:
        divisors = "|".join(str(h) for h in range(1, cfg.model.dim + 1) if cfg.model.dim % h == 0)
        raise ConfigError(f"model.dim={cfg.model.dim} is not a multiple of model.heads={cfg.model.heads}; "
                          f"valid: model.heads={divisors}")


def _milestones(cfg: DictConfig) -> None:
    """optim.milestones: the epochs of a multistep schedule's drops, increasing, and needed by it."""
    milestones = cfg.optim.milestones
    if cfg.optim.schedule == "multistep" and not milestones:
        raise ConfigError("optim.schedule=multistep needs optim.milestones; valid: increasing epochs, e.g. "
                          "optim.milestones=[91,136]")
    if milestones and list(milestones) != sorted(set(milestones)):
        raise ConfigError(f"optim.milestones={list(milestones)} is not valid; valid: increasing epochs, e.g. [91,136]")
