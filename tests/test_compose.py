"""The sweep composer (regbench/sweeps/compose.py) against Hydra's own per-cell composition.

For every cell of every shipped experiment's grid and of command-line grids, the fast path
must give the config `load_sweep_config` gives: every node (the hydra node included), the
resolved values, node types and flags, the config hash and the hydra.job fields.
"""

from __future__ import annotations

import pytest
from hydra import initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from regbench.cli.catalog import config_names
from regbench.rules.config import config_hash
from regbench.sweeps.compose import CellComposer

EXPERIMENTS = config_names("experiment")


@pytest.fixture
def loader():
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def sweep(loader, args: list[str]) -> tuple[DictConfig, list[list[str]]]:
    """(master config, the cells' override lists) as `regbench run -m ARGS` builds them."""
    master = loader.load_configuration(config_name="config", overrides=["sweep_name=s", *args],
                                       run_mode=RunMode.MULTIRUN)
    params = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
    arguments = [*params, *OmegaConf.to_container(master.hydra.overrides.task)]
    [cells] = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
    return master, cells


def nodes(cfg, path: str = ""):
    """(path, node class, schema type, struct, readonly) for every node, without resolving."""
    node = cfg
    yield path, type(node).__name__, OmegaConf.get_type(node), OmegaConf.is_struct(node), OmegaConf.is_readonly(node)
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig):
                yield from nodes(child, f"{path}.{key}")
            else:
                yield f"{path}.{key}", type(child).__name__, None, None, None
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            child = node._get_node(i)
            if isinstance(child, DictConfig | ListConfig):
                yield from nodes(child, f"{path}[{i}]")


def task_part(cfg: DictConfig) -> dict:
    d = OmegaConf.to_container(cfg, resolve=False)
    d.pop("hydra")
    return OmegaConf.to_container(OmegaConf.create(d), resolve=True)


def assert_same(fast: DictConfig, slow: DictConfig) -> None:
    assert OmegaConf.to_container(fast) == OmegaConf.to_container(slow)  # every node, hydra's too
    assert list(nodes(fast)) == list(nodes(slow))
    assert task_part(fast) == task_part(slow)
    assert config_hash(fast) == config_hash(slow)
    for key in ("overrides.task", "overrides.hydra", "job.override_dirname", "job.name", "runtime.choices"):
        assert OmegaConf.select(fast.hydra, key) == OmegaConf.select(slow.hydra, key), key


def check_grid(loader, args: list[str]) -> CellComposer:
    master, cells = sweep(loader, args)
    composer = CellComposer(loader, master)
    for cell in cells:
        assert_same(composer.compose(cell), loader.load_sweep_config(master, cell))
    return composer


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_shipped_experiment_grid_composes_as_hydra_does(loader, name):
    composer = check_grid(loader, [f"+experiment={name}"])
    assert composer.slow == 0 and composer.fast > 0
    # one Hydra composition per distinct group selection, not per cell
    assert composer.templates < composer.fast or composer.fast == 1


COMMAND_LINE_GRIDS = [
    ["dropout=standard", "dropout.p=0,0.25,0.5", "seed=0,1"],
    ["dropout=standard,gaussian,dropconnect", "dropout.p=0.1,0.3", "trainer.epochs=3"],
    ["model=cnn,mlp", "optim=sgd,adamw", "optim.lr=0.1,0.01", "dataset=mnist1d"],
    ["+experiment=mlp_dropout", "seed=5", "trainer.epochs=3"],  # the command line replaces a swept key
    ["+experiment=l2_vs_adamw", "optim.weight_decay=0,1e-3"],
    ["model.hidden=[16],[32,32]", "dropout.per_layer=null", "augment=flip,none", "dataset=digits"],
    ["dropout=standard", "name='run-${seed}',plain", "seed=0,1"],  # interpolations in the values
    ["reg.max_norm=null,3", "reg.label_smoothing=0.1", "augment.ops=[noise],[]", "dataset=mnist1d"],
    ["seed=0,1", "dropout=standard", "dropout.p_conv=${dropout.p}", "model=cnn"],
]


@pytest.mark.parametrize("args", COMMAND_LINE_GRIDS, ids=" ".join)
def test_command_line_grids_compose_as_hydra_does(loader, args):
    composer = check_grid(loader, args)
    assert composer.slow == 0


@pytest.mark.parametrize("extra", ["+reg.extra=1", "~eval.ece_bins", "++seed=3", "dataset={train_size: 100}"])
def test_order_sensitive_overrides_fall_back_to_hydra(loader, extra):
    master, cells = sweep(loader, ["dropout.p=0,0.1"])
    composer = CellComposer(loader, master)
    for cell in ([*cell, extra] for cell in cells):
        try:
            slow = loader.load_sweep_config(master, cell)
        except ConfigCompositionException as exc:
            with pytest.raises(ConfigCompositionException) as ours:
                composer.compose(cell)
            assert str(ours.value) == str(exc)
        else:
            assert_same(composer.compose(cell), slow)
    assert composer.fast == 0 and composer.slow == len(cells)


def test_a_bad_value_raises_hydras_own_error(loader):
    master, cells = sweep(loader, ["dropout.p=0.1,abc"])
    composer = CellComposer(loader, master)
    assert_same(composer.compose(cells[0]), loader.load_sweep_config(master, cells[0]))
    with pytest.raises(ConfigCompositionException) as hydra_error:
        loader.load_sweep_config(master, cells[1])
    with pytest.raises(ConfigCompositionException) as ours:
        composer.compose(cells[1])
    assert str(ours.value) == str(hydra_error.value)
    assert str(ours.value.__cause__) == str(hydra_error.value.__cause__)


def test_a_bad_group_option_raises_hydras_own_error(loader):
    master, cells = sweep(loader, ["dropout=standard,nope"])
    composer = CellComposer(loader, master)
    composer.compose(cells[0])
    with pytest.raises(Exception) as hydra_error:
        loader.load_sweep_config(master, cells[1])
    with pytest.raises(type(hydra_error.value)) as ours:
        composer.compose(cells[1])
    assert str(ours.value) == str(hydra_error.value)


def test_cells_are_independent_objects(loader):
    master, cells = sweep(loader, ["seed=0,1"])
    composer = CellComposer(loader, master)
    a, b = composer.compose(cells[0]), composer.compose(cells[1])
    assert (a.seed, b.seed) == (0, 1)
    a.dataset.val_fraction = 0.5
    assert b.dataset.val_fraction == 0.2 and composer.compose(cells[0]).dataset.val_fraction == 0.2


# ---------------------------------------------------------------------------- the default launcher


class Recorder:
    """Stands in for Hydra's Callbacks: records what each job hook saw."""

    def __init__(self):
        self.seen = []

    def on_job_start(self, config, **kwargs):
        self.seen.append(("start", OmegaConf.to_container(config)))

    def on_job_end(self, config, job_return, **kwargs):
        self.seen.append(("end", OmegaConf.to_container(config), job_return.status.name))


def task(cfg):
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    if cfg.seed == 1:
        raise RuntimeError("cell 1 fails")
    return {"cfg": OmegaConf.to_container(cfg, resolve=True), "struct": OmegaConf.is_struct(cfg),
            "nodes": list(nodes(cfg)), "num": hc.job.num, "id": hc.job.id, "task": list(hc.overrides.task),
            "output_dir": hc.runtime.output_dir, "dirname": hc.job.override_dirname, "sweep_dir": hc.sweep.dir}


def test_regbench_launcher_runs_jobs_as_hydras_basic_launcher(loader, tmp_path, monkeypatch):
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra.types import HydraContext

    from hydra_plugins.regbench_plugins.basic_launcher import RegbenchBasicLauncher
    from regbench.sweeps import multirun
    monkeypatch.chdir(tmp_path)
    master, cells = sweep(loader, ["dropout=standard,gaussian", "seed=0,1,2"])
    outcomes = {}
    for launcher in (BasicLauncher(), RegbenchBasicLauncher()):
        callbacks = Recorder()
        launcher.setup(hydra_context=HydraContext(config_loader=loader, callbacks=callbacks), task_function=task,
                       config=master)
        if isinstance(launcher, RegbenchBasicLauncher):  # as our sweeper hands them over; cell 0 composes itself
            composer = CellComposer(loader, master)
            multirun.hand_over(launcher, {tuple(c): composer.compose(c) for c in cells[1:]})
        returns = launcher.launch(cells, initial_job_idx=3)
        assert not getattr(launcher, "composed", None)  # every handed-over config was taken
        outcomes[type(launcher).__name__] = (
            [(r.status.name, r.overrides, OmegaConf.to_container(r.cfg), OmegaConf.to_container(r.hydra_cfg),
              r.working_dir, r.task_name, r.return_value if r.status.name == "COMPLETED" else str(r._return_value))
             for r in returns], callbacks.seen)
    ours, hydras = outcomes["RegbenchBasicLauncher"], outcomes["BasicLauncher"]
    assert ours == hydras
    statuses = [r[0] for r in ours[0]]
    assert statuses == ["COMPLETED", "FAILED", "COMPLETED"] * 2
    assert [r[6]["num"] for r in ours[0] if r[0] == "COMPLETED"] == [3, 5, 6, 8]
