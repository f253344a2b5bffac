"""Typed config schemas (Hydra structured configs), the keys' roles and the config hash.

The YAML files in conf/ fill these dataclasses. Because every group is typed, Hydra
rejects an unknown key or a value of the wrong type while composing; `validate`
(rules/validate.py) then checks ranges, names against the registries and incompatible
combinations, and raises ConfigError (one line, exit 2) before anything is written.

Each key also has a *role*, declared once here on its field and read by everything that
treats keys differently (config_hash, the sweep folder name, the report's grouping, the
stacked engine): `structural` (the default: hashed; cells trained as one stack must agree),
`per_cell` (hashed; may differ between the cells of one stack: rates, lr, decay, seed, ...)
or `not_hashed` (says where or how visibly a run is written, not what it computes). Keys
marked `compared=False` are hashed but do not make two runs different configurations in a
comparison (the seed: trials; the device, threads, data folder: where a run ran).

A key added after runs were written is declared `added=True`: it is hashed only where its value
differs from the schema default, so every config written before it existed keeps its hash (resume
still finds those runs), and the report reads a run folder that lacks it as holding that default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Hydra and OmegaConf are imported where used: `regbench report` reads this module's
    from omegaconf import DictConfig  # key lists and rules, and needs neither (~0.25 s of its start-up)

from regbench.core.errors import ConfigError
from regbench.core.model_kinds import MODELS  # noqa: F401  (public here too: validation, the catalog)
from regbench.rules import protocol

STRUCTURAL = "structural"  # hashed; the cells of one stack must agree (every key not declared otherwise)
PER_CELL = "per_cell"  # hashed; may differ between the cells of one stack (the engine holds it per cell)
NOT_HASHED = "not_hashed"  # where or how visibly a run is written: not hashed, not part of a sweep's folder name
ROLES = (STRUCTURAL, PER_CELL, NOT_HASHED)


def _key(default: Any, role: str = STRUCTURAL, compared: bool = True, added: bool = False) -> Any:
    """A schema field with its role (module docstring); compared=False: not a configuration difference;
    added=True: a key newer than runs already written, hashed only away from its default."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    return field(default=default, metadata={"role": role, "compared": compared, "added": added})


@dataclass
class DatasetConfig:
    name: str = "digits"  # registry key: digits, mnist1d, synthetic, mnist, cifar10, ...
    # hashed: another folder may hold other files; not compared: where the data lives, not which data
    root: str = _key("data", compared=False)  # folder holding torchvision datasets in their usual layout
    # hashed only because it always was (unhashing it would change every existing config hash)
    download: bool = _key(False, compared=False)  # let torchvision fetch missing files (needs internet)
    val_fraction: float = 0.2  # share of the training split held out for validation
    train_size: int | None = None  # subsample the training part to this many (None = all)
    split_seed: int = 0  # fixes the train/val split and subsample, independent of `seed`
    num_samples: int | None = None  # mnist1d / synthetic: examples generated, train + test (None: the dataset's own)
    shape: list[int] = field(default_factory=lambda: [1, 16, 16])  # synthetic: input shape C,H,W | C,L | D
    num_classes: int = 10  # synthetic: number of classes
    noise: float = 1.0  # synthetic: noise std around the class prototypes (higher = harder)


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | cnn | resnet | vit
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # MLP widths; CNN: classifier head widths
    channels: list[int] = field(default_factory=lambda: [32, 64])  # CNN: one conv stage per entry
    kernel_size: int = 3  # CNN: odd kernel, 'same' padding
    # relu | gelu | tanh | elu | leaky_relu | selu (None: relu; selu for dropout=alpha; gelu for vit)
    activation: str | None = None
    batchnorm: bool = False  # BatchNorm after each linear/conv layer (before the activation)
    # resnet: 6n+2 layers (He et al.: 8, 20, 56, 110) or 6n+4 (Zagoruyko & Komodakis also count the projection
    # shortcuts: WRN-16-8, WRN-28-10), n basic blocks per stage; vit: the number of transformer blocks
    depth: int | None = _key(None, added=True)
    widen: int = _key(1, added=True)  # resnet: stage widths 16k, 32k, 64k (wide ResNets: k = 8, 10)
    preact: bool = _key(False, added=True)  # resnet: pre-activation blocks (BN-act-conv, He et al. 2016b; WRN)
    dim: int = _key(64, added=True)  # vit: token width
    heads: int = _key(4, added=True)  # vit: attention heads (dim must be a multiple)
    mlp_ratio: float = _key(2.0, added=True)  # vit: width of each block's MLP over dim
    patch: int = _key(2, added=True)  # vit: patch side (2-D) or segment length (1-D); must divide the input


REPORT_FORMATS = ("png", "svg", "pdf")  # figure formats a report can write (matplotlib needs nothing extra for these)
DEFAULT_REPORT_FORMATS = ("png",)  # one format by default: every other one costs another full draw of each figure

@dataclass
class DropoutConfig:
    name: str = "none"  # registry key: none, standard, ... (see `regbench list`)
    p: float = _key(0.0, PER_CELL)  # drop rate in hidden / fully-connected slots
    p_input: float = _key(0.0, PER_CELL)  # drop rate on the input
    p_conv: float | None = _key(None, PER_CELL)  # drop rate after conv stages (None = same as p)
    per_layer: list[float] | None = _key(None, PER_CELL)  # one rate per hidden slot, overrides p (per-layer rates)
    placement: str = "after_activation"  # after_activation | before_norm (dropout before BatchNorm)
    block_size: int = 3  # dropblock: odd side of the dropped square (segment for 1-D)
    schedule: str = "constant"  # dropblock: constant | linear (ramp the rate from 0 over training)
    mask: str = "batch"  # dropconnect: one weight mask per batch, or one per sample
    p_attn: float = _key(0.0, PER_CELL, added=True)  # vit: drop rate on the attention weights (after the softmax)


@dataclass
class OptimConfig:
    name: str = "adam"  # sgd | adam | adamw
    lr: float = _key(1e-3, PER_CELL)  # peak learning rate
    momentum: float = _key(0.9, PER_CELL)  # SGD momentum (ignored by Adam/AdamW)
    nesterov: bool = False  # SGD Nesterov momentum
    weight_decay: float = _key(0.0, PER_CELL)  # L2 in the gradient for sgd/adam, decoupled for adamw
    decoupled: bool = False  # sgd: decoupled weight decay (SGDW, Loshchilov & Hutter) instead of L2
    decay_norm_and_bias: bool = False  # also decay 1-D params (biases, norm scales)
    schedule: str = "none"  # none | cosine | step | multistep
    step_size: int = 10  # step schedule: epochs between lr drops
    gamma: float = 0.1  # step / multistep schedule: lr multiplier at each drop
    milestones: list[int] | None = _key(None, added=True)  # multistep: the epochs at which the lr drops
    warmup_epochs: int = 0  # linear warm-up before the schedule


@dataclass
class AugmentConfig:
    name: str = "none"  # label for the augmentation recipe
    ops: list[str] = field(default_factory=list)  # registry keys applied in order, e.g. [flip, crop]
    crop_pad: int = 2  # crop: pad by this many pixels, then crop back at a random offset (1-D: shift)
    rotate_degrees: float = 15.0  # rotate: uniform angle in [-d, d]
    brightness: float = 0.3  # color_jitter: brightness factor in [1-b, 1+b]
    contrast: float = 0.3  # color_jitter: contrast factor in [1-c, 1+c]
    saturation: float = 0.3  # color_jitter: saturation factor (3-channel images only)
    cutout_size: int = 4  # cutout: side of the zeroed square (segment length for 1-D)
    noise_std: float = 0.1  # noise: std of Gaussian noise added to the normalised input
    scale: float = 0.1  # scale (1-D): amplitude factor in [1-s, 1+s]
    mixup_alpha: float = _key(0.2, PER_CELL)  # mixup: Beta(a, a) mixing weight
    cutmix_alpha: float = _key(1.0, PER_CELL)  # cutmix: Beta(a, a) area ratio


@dataclass
class RegConfig:
    label_smoothing: float = _key(0.0, PER_CELL)  # cross-entropy label smoothing in [0, 1)
    l1: float = _key(0.0, PER_CELL)  # L1 penalty coefficient on weights (>= 2 dims) added to the loss
    max_norm: float | None = _key(None, PER_CELL)  # max-norm constraint c on each unit's incoming weights (None = off)
    # stochastic depth (Huang et al. 2016) on every residual branch (resnet, vit), per example; the rate rises
    # linearly over the blocks from 0 to this value (timm's rule)
    drop_path: float = _key(0.0, PER_CELL, added=True)


@dataclass
class EvalConfig:
    mc_samples: int = 0  # MC dropout: stochastic passes T at the end of training (0 = off)
    mc_every_epoch: bool = False  # also log MC metrics on the validation split every epoch
    mode: str = "eval"  # eval | train: evaluate in train mode to measure the "forgot model.eval()" mistake
    ece_bins: int = 15  # equal-width confidence bins for ECE and reliability diagrams


@dataclass
class TrainerConfig:
    epochs: int = 30  # maximum number of epochs
    batch_size: int = 64  # examples per optimizer step
    # The process-wide execution settings below are structural and hashed: each changes the numbers a
    # run produces (device: other kernels, bf16 autocast on CUDA; threads: CPU reduction order;
    # deterministic: other CUDA algorithms; channels_last / compile: other kernels), so a run with
    # another value is not reused by resume, and one stack shares one setting. Not compared: they say
    # how a run ran, so a report puts runs that differ only in them into one configuration.
    device: str = _key("auto", compared=False)  # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    amp: bool = True  # bf16 autocast on CUDA (no effect elsewhere)
    select: str = protocol.DEFAULT_SELECT  # final | val_loss | val_acc: the weights that score the test split
    patience: int | None = None  # early stopping after this many epochs without improvement (None = off)
    monitor: str | None = None  # val_loss | val_acc: what early stopping watches (None: follows select)
    min_delta: float = 0.0  # an improvement smaller than this does not count (selection and stopping)
    train_eval_size: int = 1000  # fixed training subset measured in eval mode for the gap
    threads: int | None = _key(None, compared=False)  # CPU threads (None: 1 for small models on CPU, else torch's)
    progress: bool = _key(True, NOT_HASHED)  # tqdm bar per run (hidden automatically when not on a terminal)
    # not hashed: a checkpointed run computes exactly what an uninterrupted one does (tests/test_resume.py)
    checkpoint: bool = _key(False, NOT_HASHED)  # save a checkpoint each epoch so an interrupted run continues exactly
    deterministic: bool = _key(False, compared=False)  # deterministic algorithms, cuDNN flags (reproducible on CUDA)
    channels_last: bool = _key(False, compared=False)  # NHWC layout for 2-D CNNs, ResNets (CNN: 13% faster a step here)
    compile: bool = _key(False, compared=False)  # torch.compile the training forward (our 2-core CPU: slower, +19 s)


@dataclass
class TensorBoardConfig:
    enabled: bool = _key(False, NOT_HASHED)  # set by logger=tensorboard: scalars and hparams under <run>/tensorboard/


@dataclass
class MlflowConfig:
    enabled: bool = _key(False, NOT_HASHED)  # set by logger=mlflow (alone or in a list: logger=[csv,mlflow])
    tracking_uri: str | None = _key(None, NOT_HASHED)  # None: sqlite:///<results_dir>/mlflow.db (+ .mlartifacts/)
    experiment: str | None = _key(None, NOT_HASHED)  # MLflow experiment (None: the sweep name; single runs: "regbench")


@dataclass
class LoggerConfig:
    """Where runs are mirrored besides metrics.csv/summary.json (always written); filled by conf/logger/*.yaml."""

    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # per cell; not compared: runs that differ only in the seed are trials of one configuration
    seed: int = _key(0, PER_CELL, compared=False)  # init, data order, dropout masks; 0 is a valid seed
    results_dir: str = _key("runs", NOT_HASHED)  # run folders are created under here
    sweep_name: str | None = _key(None, NOT_HASHED)  # set by `regbench run -m`: runs of one sweep share a folder
    name: str | None = _key(None, NOT_HASHED)  # optional label for the run folder (experiments set it)
    resume: bool = _key(True, NOT_HASHED)  # skip a config that already completed under results_dir (by config hash)
    report: bool = _key(True, NOT_HASHED)  # after a multirun, write <sweep folder>/report (tables, figures, report.md)
    # the report's equivalence margins: 0.02 (its headline metric) or 'test.acc=0.02,final.gap_loss=0.05'; None: default
    margin: str | None = _key(None, NOT_HASHED)
    # figure formats of that report, e.g. report_format=[png,svg]; PNG is always written (report.html embeds it)
    report_format: list[str] = field(default_factory=lambda: list(DEFAULT_REPORT_FORMATS),
                                     metadata={"role": NOT_HASHED})
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # logger=csv | tensorboard | mlflow | [csv,mlflow]


def register_configs() -> None:
    """Store the schemas so the YAML group files are validated against them."""
    from hydra.core.config_store import ConfigStore  # here: `regbench report` reads these rules, not Hydra

    cs = ConfigStore.instance()
    cs.store(name="regbench_schema", node=Config)


def group_names() -> list[str]:
    """The config groups (dataset, model, dropout, optim, augment, trainer ...): the schema's sections."""
    return [f.name for f in dataclasses.fields(Config)
            if callable(f.default_factory) and dataclasses.is_dataclass(f.default_factory)]


def _schema_node(path: str):
    """The dataclass at a dotted path of the schema ('' = Config), or None if there is none."""
    node = Config
    for part in filter(None, path.split(".")):
        factory = {f.name: f.default_factory for f in dataclasses.fields(node)}.get(part)
        if not (callable(factory) and dataclasses.is_dataclass(factory)):
            return None
        node = factory
    return node


def schema_keys(path: str = "") -> list[str]:
    """The valid keys at a dotted path of the schema ('' = top level, 'model' = ModelConfig)."""
    node = _schema_node(path)
    return [f.name for f in dataclasses.fields(node)] if node is not None else []


def _field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def _leaf_fields(node=Config, prefix: str = ""):
    """(dotted key, dataclass field) for every value key of the schema, e.g. ('dropout.p', Field)."""
    for f in dataclasses.fields(node):
        if callable(f.default_factory) and dataclasses.is_dataclass(f.default_factory):
            yield from _leaf_fields(f.default_factory, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def key_roles() -> dict[str, str]:
    """Every schema key (dotted) -> its role (STRUCTURAL unless its field declares another)."""
    return {key: f.metadata.get("role", STRUCTURAL) for key, f in _leaf_fields()}


def keys_with_role(role: str) -> frozenset[str]:
    """The dotted schema keys of one role, e.g. keys_with_role(PER_CELL) -> {'seed', 'optim.lr', ...}."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    return frozenset(key for key, r in key_roles().items() if r == role)


STRUCTURAL_KEYS = keys_with_role(STRUCTURAL)
PER_CELL_KEYS = keys_with_role(PER_CELL)  # values the stacked engine may hold per cell
NOT_HASHED_KEYS = keys_with_role(NOT_HASHED)  # left out of config_hash and of a sweep's folder name
# Differences in these do not make two runs different configurations (the report's grouping).
NOT_COMPARED_KEYS = NOT_HASHED_KEYS | {key for key, f in _leaf_fields() if not f.metadata.get("compared", True)}
FLOAT_KEYS = tuple(key for key, f in _leaf_fields() if "float" in str(f.type))  # float, float | None, list[float]
# Keys added after runs were written (module docstring): key -> its schema default.
ADDED_KEYS = {key: _field_default(f) for key, f in _leaf_fields() if f.metadata.get("added")}
LIST_KEYS = tuple(key for key, f in _leaf_fields() if "list" in str(f.type))  # list[int], list[float] | None, ...
# An example value of each list key whose default shows none (None, []) or not a typical one, for messages
# (`optim.milestones=5 is not a list; valid: a list, e.g. optim.milestones=[10,20]`); every other list key's
# example is its default (model.hidden=[256,256]). tests/test_bad_input.py checks that every list key has one.
LIST_EXAMPLES = {"optim.milestones": [10, 20], "dropout.per_layer": [0.2, 0.5], "augment.ops": ["flip", "crop"],
                 "report_format": ["png", "svg"]}


def list_example(key: str) -> str | None:
    """An example value of a list key in override syntax ('model.hidden' -> '[256,256]'); None for another key."""
    if key not in LIST_KEYS:
        return None
    f = dict(_leaf_fields())[key]
    value = LIST_EXAMPLES.get(key) or _field_default(f)
    return f"[{','.join(map(str, value))}]" if value else None


# ---------------------------------------------------------------------------- validation

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step", "multistep")
DEVICES = ("auto", "cpu", "cuda", "mps")
EVAL_MODES = ("eval", "train")
PLACEMENTS = ("after_activation", "before_norm")


def unknown_keys(cfg: DictConfig, path: str = "") -> list[str]:
    """Keys the schema does not declare (`+foo=1` adds one past Hydra's struct check), dotted, in order."""
    node = _schema_node(path)
    if node is None:
        return []
    known = {f.name for f in dataclasses.fields(node)}
    found = []
    for key in cfg:
        dotted = f"{path}.{key}" if path else str(key)
        if key == "hydra" and not path:
            continue
        if key not in known:
            found.append(dotted)
        elif _schema_node(dotted) is not None and hasattr(cfg[key], "keys"):
            found += unknown_keys(cfg[key], dotted)
    return found


def unknown_key_message(key: str) -> str:
    """The one line for a dotted key the schema does not know: the nearest valid key, and the valid keys beside it
    (whoever finds it: a `+key` override, Hydra's struct check, a user's config file)."""
    import difflib

    parent = key.rpartition(".")[0]
    valid = schema_keys(parent)
    near = difflib.get_close_matches(key, [f"{parent}.{k}" if parent else k for k in valid], n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    return f"unknown key {key!r}; {hint}valid keys{' in ' + parent if parent else ''}: {', '.join(valid)}"


def refuse_unknown_keys(cfg: DictConfig) -> None:
    """One line for the first key the schema does not know, with the nearest valid key."""
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError(unknown_key_message(unknown[0]))


def check_results_dir(path) -> None:
    """results_dir names a folder: an empty one would put the run folders in the working directory and a
    sweep's multirun.yaml at the file system's root (`${results_dir}/${sweep_name}` = `/sweep-...`); one starting
    with `~` (quoted, so the shell left it) is no home folder to Hydra's sweep folder nor to the file system."""
    if not str(path).strip():
        raise ConfigError(f"results_dir={path!r} is empty; valid: a folder path (default: runs)")
    if str(path).startswith("~"):
        raise ConfigError(f"results_dir={path!r} starts with '~', which only the shell expands (outside quotes); "
                          "valid: an absolute path (results_dir=$HOME/...) or one relative to the working folder")


def check_sweep_name(name) -> None:
    """sweep_name is one folder inside results_dir: the command line checks it before Hydra writes the
    sweep's multirun.yaml there (`sweep_name=..` would put it in the folder above results_dir)."""
    if name is not None and (not str(name).strip() or set(str(name)) & set("/\\") or str(name).startswith(".")):
        raise ConfigError(f"sweep_name={name!r} is not valid; valid: one folder name (no '/', not starting with '.')")


# ---------------------------------------------------------------------------- hashing

def plain_config(cfg: DictConfig) -> dict:
    """The resolved config as plain dicts and lists, without the hydra node."""
    from omegaconf import OmegaConf

    # node by node, leaving the hydra node out before converting (it is the larger part of a job's config)
    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in ((k, cfg[k]) for k in cfg if k != "hydra")}


def hashable_dict(cfg: DictConfig) -> dict:
    """The resolved config without the hydra node, the NOT_HASHED_KEYS and the ADDED_KEYS at their defaults."""
    d = plain_config(cfg)
    drop_keys(d, NOT_HASHED_KEYS | {key for key, value in ADDED_KEYS.items() if lookup(d, key, _ABSENT) == value})
    return d


def lookup(d: dict, key: str, absent: Any = None) -> Any:
    """The value at a dotted key of nested dicts (a config's plain values), `absent` where there is none."""
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return absent
        d = d[part]
    return d


_ABSENT = object()  # absent from a config: equal to no default


def drop_keys(d: dict, keys) -> None:
    """Remove dotted `keys` from the nested dict d in place; a group left empty goes too (as if it
    were never there), and a group written as one value (older runs: logger: csv) goes whole."""
    for key in keys:
        *parents, leaf = key.split(".")
        nodes = [d]
        for p in parents:
            child = nodes[-1].get(p, {})
            if not isinstance(child, dict):
                nodes[-1].pop(p, None)
                break
            nodes.append(child)
        else:
            nodes[-1].pop(leaf, None)
        for parent, node, name in zip(reversed(nodes[:-1]), reversed(nodes[1:]), reversed(parents[: len(nodes) - 1]),
                                      strict=True):
            if node == {}:
                parent.pop(name, None)


def config_hash(cfg: DictConfig) -> str:
    """Stable hash of what a run computes: same config -> same hash, on any machine."""
    blob = json.dumps(hashable_dict(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
