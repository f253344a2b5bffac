"""Which config keys act under which condition, and the refusal of settings that cannot take effect.

`regbench run -m dropout.p=0,0.1,0.3` with the default `dropout=none` would train the same
baseline three times and look like a sweep. Every key that only acts under some condition is
declared once in RULES; `ineffective(cfg)` derives the check from it. The conditions are read
from what the components declare about themselves, not restated here: a dropout type's
`rates` / `activation_slots` / `keys` (regularizers/base.py), an augmentation op's `PARAMS`
(data/augment.py), a dataset loader's signature (data/base.py).

A key counts as *set* when its value differs from its default: the value in the chosen group
file (`conf/dropout/standard.yaml` sets `p: 0.5`) or else the schema default (config.py). A
default value cannot have been given on purpose, so it is never refused.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from regbench.core.errors import ConfigError
from regbench.core.model_kinds import CONV_MODELS, LAYERED_MODELS, MODELS, RESIDUAL_MODELS
from regbench.rules.config import Config, hashable_dict, lookup, plain_config

log = logging.getLogger("regbench")


@dataclass(frozen=True)
class Rule:
    keys: tuple[str, ...]  # dotted config keys governed by this rule
    active: Callable[[DictConfig, str], bool]  # (cfg, key) -> does the key act in this config?
    why: Callable[[DictConfig, str], str]  # (cfg, key) -> "with X; valid: Y" (the end of the one-line error)


def _dropout(cfg):
    from regbench.regularizers import DROPOUTS

    return DROPOUTS.get(cfg.dropout.name)


def _types(pred) -> str:
    from regbench.regularizers import DROPOUTS

    return "|".join(n for n in DROPOUTS.names() if pred(DROPOUTS.get(n)))


def _dropout_key_owners(key: str) -> str:
    return _types(lambda spec: key in spec.keys)


def _dataset_params(name: str) -> set[str]:
    from regbench.data import DATASETS

    return set(inspect.signature(DATASETS.get(name)).parameters)


def _loader_keys() -> tuple[str, ...]:
    """dataset.* keys that only some datasets' loaders read (split_seed is also the split's seed)."""
    from regbench.data import DATASETS

    keys = set().union(*(_dataset_params(n) for n in DATASETS.names())) - {"split_seed"}
    return tuple(f"dataset.{k}" for k in sorted(keys))


def _augment_keys() -> tuple[str, ...]:
    from regbench.data.augment import PARAMS

    return tuple(f"augment.{k}" for k in sorted(set().union(*PARAMS.values())))


def _augment_owner(key: str) -> str:
    from regbench.data.augment import PARAMS

    return "|".join(op for op, params in sorted(PARAMS.items()) if key.split(".")[1] in params)


def _rules() -> list[Rule]:
    from regbench.regularizers.base import RATE_KEYS

    leaf = lambda key: key.split(".", 1)[1]  # noqa: E731 - "dropout.p" -> "p"
    return [
        Rule(("dropout.block_size", "dropout.schedule", "dropout.mask"),
             lambda c, k: leaf(k) in _dropout(c).keys,
             lambda c, k: f"with dropout={c.dropout.name}; valid: dropout={_dropout_key_owners(leaf(k))}"),
        Rule(("dropout.p_input", "dropout.placement"),
             lambda c, k: _dropout(c).activation_slots or not bool(_dropout(c).rate_keys),
             lambda c, k: f"with dropout={c.dropout.name} (it drops weights, not activations); "
                          f"valid: dropout={_types(lambda s: s.activation_slots)}"),
        Rule(("dropout.p_conv",), lambda c, k: c.model.name in CONV_MODELS,
             lambda c, k: f"with model={c.model.name} (no conv stages); "
                          f"valid: model={'|'.join(CONV_MODELS)}, or dropout.p for hidden layers"),
        Rule(("dropout.p_attn",), lambda c, k: c.model.name == "vit",
             lambda c, k: f"with model={c.model.name} (no attention); valid: model=vit"),
        Rule(("dropout.per_layer", "dropout.placement", "model.hidden"), lambda c, k: c.model.name in LAYERED_MODELS,
             lambda c, k: f"with model={c.model.name} ({_no_hidden_layers(c.model.name)}); "
                          f"valid: model={'|'.join(LAYERED_MODELS)}"),
        # after the rules on what the model has: a slot the model lacks is the reason a rate cannot act, not the type
        Rule((*(f"dropout.{k}" for k in RATE_KEYS), "dropout.placement"),
             lambda c, k: bool(_dropout(c).rate_keys),
             lambda c, k: f"with dropout={c.dropout.name}; "
                          f"choose a type: dropout={_types(lambda s: bool(s.rate_keys))}"),
        Rule(("model.depth",), lambda c, k: c.model.name in RESIDUAL_MODELS,
             lambda c, k: f"with model={c.model.name}; valid: model={'|'.join(RESIDUAL_MODELS)}"),
        Rule(("model.widen", "model.preact"), lambda c, k: c.model.name == "resnet",
             lambda c, k: f"with model={c.model.name}; valid: model=resnet"),
        Rule(("model.dim", "model.heads", "model.mlp_ratio", "model.patch"), lambda c, k: c.model.name == "vit",
             lambda c, k: f"with model={c.model.name}; valid: model=vit"),
        Rule(("model.batchnorm",), lambda c, k: c.model.name != "vit",
             lambda c, k: "with model=vit (its blocks use LayerNorm); "
                          f"valid: model={'|'.join(m for m in MODELS if m != 'vit')}"),
        Rule(("reg.drop_path",), lambda c, k: c.model.name in RESIDUAL_MODELS,
             lambda c, k: f"with model={c.model.name} (no residual branches); "
                          f"valid: model={'|'.join(RESIDUAL_MODELS)}"),
        Rule(("dropout.p",),  # per_layer sets every hidden rate; p still sets the conv rate when p_conv is unset
             lambda c, k: c.dropout.per_layer is None or (c.model.name == "cnn" and c.dropout.p_conv is None),
             lambda c, k: "with dropout.per_layer set (it gives every hidden layer its rate); "
                          "valid: dropout.p or dropout.per_layer, not both"),
        Rule(("dropout.placement",), lambda c, k: c.model.batchnorm,
             lambda c, k: "with model.batchnorm=false (nothing to place dropout before); valid: model.batchnorm=true"),
        Rule(("model.channels", "model.kernel_size"), lambda c, k: c.model.name == "cnn",
             lambda c, k: f"with model={c.model.name}; valid: model=cnn"),
        Rule(("optim.momentum", "optim.nesterov", "optim.decoupled"), lambda c, k: c.optim.name == "sgd",
             lambda c, k: f"with optim={c.optim.name}; valid: optim=sgd"),
        Rule(("optim.nesterov",), lambda c, k: c.optim.momentum > 0,
             lambda c, k: "with optim.momentum=0; valid: optim.momentum > 0"),
        Rule(("optim.step_size",), lambda c, k: c.optim.schedule == "step",
             lambda c, k: f"with optim.schedule={c.optim.schedule}; valid: optim.schedule=step"),
        Rule(("optim.gamma",), lambda c, k: c.optim.schedule in ("step", "multistep"),
             lambda c, k: f"with optim.schedule={c.optim.schedule}; valid: optim.schedule=step|multistep"),
        Rule(("optim.milestones",), lambda c, k: c.optim.schedule == "multistep",
             lambda c, k: f"with optim.schedule={c.optim.schedule}; valid: optim.schedule=multistep"),
        # a drop at or after the last epoch never happens: epochs count from 0, and a drop at epoch m acts from
        # epoch m on (torch's StepLR / MultiStepLR stepped per epoch; engine/optimizers.lr_factor)
        Rule(("optim.milestones",), lambda c, k: c.optim.schedule != "multistep" or _late_drops(c) == [],
             lambda c, k: f"at epoch {'|'.join(map(str, _late_drops(c)))} with trainer.epochs={c.trainer.epochs} "
                          f"(the lr would never drop there); valid: {_drop_room(c, 'milestones')}"),
        Rule(("optim.step_size", "optim.schedule"),
             lambda c, k: c.optim.schedule != "step" or c.optim.step_size < c.trainer.epochs,
             lambda c, k: f"with {'' if k == 'optim.step_size' else f'optim.step_size={c.optim.step_size} and '}"
                          f"trainer.epochs={c.trainer.epochs} "
                          f"(the lr would never drop); valid: {_drop_room(c, 'optim.step_size=')}"),
        # the warm-up sets the lr until its last epoch: a milestone inside it lands at its end (milestones [2] and
        # [4] under a 5-epoch warm-up train the same). (A step schedule's drops inside it still act: they fold into
        # one drop at its end, then go on every step_size epochs.) A cosine schedule after a warm-up as long as the
        # run never starts.
        Rule(("optim.milestones",), lambda c, k: c.optim.schedule != "multistep" or _warm_drops(c) == [],
             lambda c, k: f"at epoch {'|'.join(map(str, _warm_drops(c)))} inside optim.warmup_epochs="
                          f"{c.optim.warmup_epochs} (the warm-up sets the lr until then); valid: "
                          + (f"milestones {c.optim.warmup_epochs}..{c.trainer.epochs - 1}, or a shorter warm-up"
                             if c.optim.warmup_epochs < c.trainer.epochs else
                             f"optim.warmup_epochs < trainer.epochs={c.trainer.epochs} (it takes the whole run)")),
        Rule(("optim.schedule",),
             lambda c, k: c.optim.schedule != "cosine" or c.optim.warmup_epochs < c.trainer.epochs,
             lambda c, k: f"with optim.warmup_epochs={c.optim.warmup_epochs} and trainer.epochs="
                          f"{c.trainer.epochs} (the warm-up takes the whole run); valid: optim.warmup_epochs < "
                          f"{c.trainer.epochs}"),
        Rule(("optim.decay_norm_and_bias",), lambda c, k: c.optim.weight_decay > 0,
             lambda c, k: "with optim.weight_decay=0; valid: optim.weight_decay > 0"),
        Rule(_augment_keys(), lambda c, k: any(leaf(k) in _params(op) for op in c.augment.ops),
             lambda c, k: f"with augment.ops={_fmt(list(c.augment.ops))}; valid: an augmentation that uses it "
                          f"(augment={_augment_owner(k)}, or add it to augment.ops)"),
        Rule(_loader_keys(), lambda c, k: leaf(k) in _dataset_params(c.dataset.name),
             lambda c, k: f"with dataset={c.dataset.name}; valid: a dataset that reads it "
                          f"(dataset={'|'.join(_datasets_reading(leaf(k)))})"),
        Rule(("eval.mc_samples",), lambda c, k: _stochastic(c),
             lambda c, k: f"with dropout={c.dropout.name}"
                          f"{'' if c.dropout.name == 'none' else ' at rate 0'} and no drop path (every pass "
                          "would be the same); valid: a dropout rate > 0 or reg.drop_path > 0"),
        Rule(("eval.mc_every_epoch",), lambda c, k: c.eval.mc_samples > 0,
             lambda c, k: "with eval.mc_samples=0 (MC dropout off); valid: eval.mc_samples > 0, e.g. 30"),
        # min_delta also decides which epoch is "best" when trainer.select keeps the best weights (protocol.py)
        Rule(("trainer.min_delta",), lambda c, k: c.trainer.patience is not None or c.trainer.select != "final",
             lambda c, k: "without early stopping (trainer.patience=null) and with trainer.select=final; "
                          "valid: trainer.patience=N or trainer.select=val_loss|val_acc"),
        Rule(("report_format",), lambda c, k: c.report,
             lambda c, k: "with report=false (no sweep report is written); valid: report=true, or "
                          "`regbench report PATH --format …` later"),
        Rule(("trainer.monitor",), lambda c, k: c.trainer.patience is not None,
             lambda c, k: "without early stopping (trainer.patience=null); valid: trainer.patience=N, "
                          "or leave trainer.monitor unset"),
    ]


def _no_hidden_layers(model: str) -> str:
    if model == "vit":
        return "its MLPs sit inside the transformer blocks, where dropout.p sets their rate"
    return "no fully-connected hidden layers"


def _stochastic(cfg: DictConfig) -> bool:
    """Does the model draw anything in training mode: a dropout type with a rate above 0, or drop path?
    (From the config, so a plugin type counts by its rate keys; a run still warns if its model has no
    stochastic module after all: engine/uncertainty.warn_ineffective.)"""
    rates = [r for key in _dropout(cfg).rate_keys if (r := cfg.dropout.get(key)) is not None]
    values = [v for r in rates for v in (r if OmegaConf.is_list(r) or isinstance(r, list) else [r])]
    return any(v > 0 for v in values) or (cfg.reg.get("drop_path") or 0) > 0


def _warm_drops(cfg: DictConfig) -> list[int]:
    """The milestones of a multistep schedule inside its warm-up."""
    return [m for m in (cfg.optim.milestones or []) if m < cfg.optim.warmup_epochs]


def _late_drops(cfg: DictConfig) -> list[int]:
    """The milestones of a multistep schedule at or after its last epoch."""
    return [m for m in (cfg.optim.milestones or []) if m >= cfg.trainer.epochs]


def _drop_room(cfg: DictConfig, what: str) -> str:
    epochs = cfg.trainer.epochs
    if epochs < 2:
        return "trainer.epochs >= 2 (a drop acts from a later epoch on)"
    return f"{what}{'' if what.endswith('=') else ' '}1..{epochs - 1}, or more trainer.epochs"


def _params(op: str) -> tuple[str, ...]:
    from regbench.data.augment import PARAMS

    return PARAMS.get(op, ())


def _datasets_reading(param: str) -> list[str]:
    from regbench.data import DATASETS

    return [n for n in DATASETS.names() if param in _dataset_params(n)]


@functools.cache
def _group_file(group: str, name: str) -> dict:
    """The values a shipped group file sets, e.g. ('dropout', 'standard') -> {'name': 'standard', 'p': 0.5}."""
    path = resources.files("regbench.conf").joinpath(f"{group}/{name}.yaml")
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def default(key: str, cfg: DictConfig | dict | None = None) -> Any:
    """The default of a dotted key: what the chosen group file sets (the group's `name` names its
    file: dropout.name=standard -> conf/dropout/standard.yaml), else the schema default.
    `cfg`: the config, or its plain values (config.plain_config)."""
    group, leaf = key.split(".", 1) if "." in key else ("", key)
    node = cfg.get(group) if cfg is not None and group else None
    if isinstance(node, (DictConfig, dict)) and "name" in node:
        chosen = _group_file(group, str(node["name"]))
        if leaf in chosen:
            return copy.deepcopy(chosen[leaf])  # copies of cached values: callers may put them into a config dict
    return copy.deepcopy(_schema_default(key))


@functools.cache
def _schema_default(key: str) -> Any:
    """The schema's default of a dotted key (read once: building Config() costs ~0.1 ms, and a grid's
    checks ask for dozens of keys per cell)."""
    node: Any = Config()
    for part in key.split("."):
        node = getattr(node, part)
    return dataclasses.asdict(node) if dataclasses.is_dataclass(node) else node


def _value(cfg: DictConfig | dict, key: str) -> Any:
    """The value of a dotted key (None where it is absent), from the config or from its plain values."""
    if isinstance(cfg, dict):
        return lookup(cfg, key)
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def ineffective(cfg: DictConfig, plain: dict | None = None) -> dict[str, str]:
    """{key: one-line message} for every key set away from its default that cannot act in `cfg`
    (`plain`: its values as config.plain_config gives them, when the caller has them already)."""
    found: dict[str, str] = {}
    # the cell's values converted once (no rule reads the hydra node): the rules read ~40 keys of each cell, and
    # OmegaConf.select costs ~70 us a key where a dict lookup costs nothing (32 cells: 0.12 s -> 0.03 s)
    plain = plain_config(cfg) if plain is None else plain
    for rule in _rules():
        for key in rule.keys:
            value = _value(plain, key)
            if key in found or value == default(key, plain) or rule.active(cfg, key):
                continue
            found[key] = f"{key}={_fmt(value)} has no effect {rule.why(cfg, key)}"
    return found


def check_effective(cfg: DictConfig) -> None:
    """A single run: refuse the first setting that cannot take effect."""
    problems = ineffective(cfg)
    if problems:
        raise ConfigError(next(iter(problems.values())))


def check_grid(cfgs: list[DictConfig], found: list[dict[str, str]] | None = None) -> None:
    """A sweep: refuse a value of a key that acts in no cell holding it (`dropout.p=0,0.3` with dropout=none;
    `optim.milestones=[1],[5]` with trainer.epochs=3: the [5] cells never drop). A value that acts in some
    cells and not others (`dropout=none,standard dropout.p=0.3`: the baseline cell ignores p) is an ordinary
    shared setting and passes, also where it equals the acting cell's default (`model=resnet,vit
    model.batchnorm=true`: the ResNet's BatchNorm is on). `found`: per cell, more {key: message} that cannot
    act there, from checks that need the cell's data (engine/setup.colour_unused), judged by the same rule."""
    plain = [plain_config(cfg) for cfg in cfgs]
    per_cell = [ineffective(cfg, values) for cfg, values in zip(cfgs, plain, strict=True)]
    for problems, more in zip(per_cell, found or [{}] * len(cfgs), strict=True):
        problems.update({key: message for key, message in more.items() if key not in problems})
    rules, decided, acting_in = _rules(), set(), {}
    for problems, cell in zip(per_cell, plain, strict=True):
        for key, message in problems.items():
            value = _value(cell, key)
            if (key, json.dumps(value)) in decided:
                continue
            holding = [i for i, other in enumerate(plain) if _value(other, key) == value]
            if key not in acting_in:
                acting_in[key] = {i for i in range(len(cfgs)) if key not in per_cell[i] and _acts(rules, cfgs[i], key)}
            acting = acting_in[key]
            if not acting & set(holding):
                where = "every cell with this value" if acting else "every cell of the sweep"
                raise ConfigError(message + (f" (in {where})" if len(cfgs) > 1 else ""))
            decided.add((key, json.dumps(value)))
    _warn_repeated_cells(cfgs, per_cell)


def _acts(rules: list[Rule], cfg: DictConfig, key: str) -> bool:
    """Does the key act in this config, whatever its value (every rule on it holds)?"""
    return all(rule.active(cfg, key) for rule in rules if key in rule.keys)


def _warn_repeated_cells(cfgs: list[DictConfig], per_cell: list[dict[str, str]]) -> None:
    """`dropout=none,standard dropout.p=0.1,0.3` trains the no-dropout baseline twice: say so."""
    seen: set[str] = set()
    repeats, keys = 0, set()
    for cfg, problems in zip(cfgs, per_cell, strict=True):
        d = hashable_dict(cfg)
        for key in problems:  # what the cell computes: ineffective keys back at their defaults
            *parents, leaf = key.split(".")
            node = d
            for part in parents:
                node = node[part]
            node[leaf] = default(key, cfg)
        blob = json.dumps(d, sort_keys=True, default=str)
        repeats += blob in seen
        keys |= set(problems) if blob in seen else set()
        seen.add(blob)
    if repeats:
        # no ineffective key: two cells whose overrides compose alike (a repeated value is refused earlier)
        why = f"{', '.join(sorted(keys))} has no effect there" if keys else "their overrides compose alike"
        log.warning("warning: %d cell(s) of this sweep train the same configuration as another cell (%s); the "
                    "report shows them as separate groups with equal numbers", repeats, why)
