"""Sweep cells composed once per config-group selection, plain values applied directly.

Hydra composes every job of a sweep from scratch (`load_sweep_config`: the defaults tree,
every YAML file, the schema merge), ~0.07-0.3 s per cell with our schema, and its basic
launcher composes each cell a second time. Cells of a grid differ mostly in plain values
(`dropout.p=0.1 seed=2`), which Hydra applies only *after* composing, one
`OmegaConf.update(cfg, key, value, merge=True)` each, in command-line order. So:

1. a cell's overrides are split into its *selection* (config-group choices such as
   `dropout=standard` or `+experiment=mlp_dropout`, and `hydra.*` overrides) and its plain
   `key=value` overrides;
2. Hydra composes a *template* once per distinct selection (its own `load_sweep_config`);
3. a cell is the template's pickled bytes loaded again (no defaults tree, no YAML, no schema
   merge: scripts/bench_compose.py), its plain values applied exactly as Hydra applies them, and the per-job
   fields Hydra derives from all of a job's overrides set the way Hydra sets them
   (`hydra.overrides.task`, `hydra.job.override_dirname`, the resolver cache).

Everything else composes with Hydra per cell, unchanged: `+key=` / `++key=` / `~key`
value overrides (their order relative to the plain ones matters), dict values, `key@pkg=`
forms, a config that sets `hydra.searchpath` (groups could come from paths this process's
repository does not know), and any cell whose fast composition raises (so every error message
is Hydra's own). tests/test_compose.py compares both paths on every cell of every shipped
experiment's grid and on command-line grids: full config, resolved values, flags, hash.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

# Hydra's own function for hydra.job.override_dirname (a plain module function of its config
# loader), so the fast path cannot drift from what load_sweep_config computes.
from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf


class CellComposer:
    """Composes the cells of one sweep (one master config): `composer.compose(overrides)`.

    Templates are cached per selection, parsed overrides per string; `fast` / `slow` count
    the cells composed each way (the sweeper logs them).
    """

    def __init__(self, config_loader, master: DictConfig):
        self.loader = config_loader
        self.master = master
        self.parser = OverridesParser.create(config_loader=config_loader)
        self._parsed: dict[str, Override] = {}
        self._is_group: dict[str, bool] = {}  # key_or_group -> is a config group (a file-system lookup)
        self._templates: dict[tuple[str, ...], bytes] = {}  # selection -> pickled composed template
        # groups may come from hydra.searchpath entries this loader's repository does not hold
        self.enabled = not OmegaConf.select(master, "hydra.searchpath", default=None)
        self.fast = 0
        self.slow = 0

    @property
    def templates(self) -> int:
        """How many selections Hydra composed a template for."""
        return len(self._templates)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        """The cell's config, equal to `loader.load_sweep_config(master, overrides)`."""
        overrides = list(overrides)
        split = self._split(overrides) if self.enabled else None
        if split is not None:
            selection, plain, parsed = split
            try:
                cfg = self._from_template(selection, plain, parsed)
            except Exception:  # noqa: BLE001 - Hydra composes it again and raises its own error
                cfg = None
            if cfg is not None:
                self.fast += 1
                return cfg
        self.slow += 1
        return self.loader.load_sweep_config(self.master, overrides)

    # ------------------------------------------------------------------ internals

    def _parse(self, line: str) -> Override:
        if line not in self._parsed:
            [self._parsed[line]] = self.parser.parse_overrides([line])
        return self._parsed[line]

    def _split(self, overrides: list[str]) -> tuple[tuple[str, ...], list[Override], list[Override]] | None:
        """(selection, plain value overrides, all parsed), or None if the cell needs Hydra."""
        parsed = [self._parse(line) for line in overrides]
        selection, plain = [], []
        for o in parsed:
            if o.is_sweep_override():
                return None
            if o.key_or_group not in self._is_group:
                self._is_group[o.key_or_group] = self.loader.repository.group_exists(o.key_or_group)
            group = self._is_group[o.key_or_group] and not isinstance(o.value(), dict)
            if o.is_hydra_override() or group:
                selection.append(o.input_line)
            elif o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None \
                    or isinstance(o.value(), dict):
                return None  # order-sensitive or merging overrides: Hydra applies them per cell
            else:
                plain.append(o)
        return tuple(selection), plain, parsed

    def _from_template(self, selection: tuple[str, ...], plain: list[Override],
                       parsed: list[Override]) -> DictConfig:
        if selection not in self._templates:
            template = self.loader.load_sweep_config(self.master, list(selection))
            self._templates[selection] = pickle.dumps(template, protocol=pickle.HIGHEST_PROTOCOL)
        # A fresh object per cell: the template's bytes loaded again (pickling keeps types, flags
        # and parents; it is OmegaConf's own serialisation, ~3x cheaper than copy.deepcopy here).
        cfg: DictConfig = pickle.loads(self._templates[selection])
        for o in plain:  # what Hydra's ConfigLoaderImpl._apply_overrides_to_config does for `key=value`
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        # The fields load_configuration derives from every override of the job, in its order.
        app = [o for o in parsed if not o.is_hydra_override()]
        cfg.hydra.overrides.task = [o.input_line for o in app]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=app, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg
