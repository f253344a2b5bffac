"""Every bad input named in the issues, driven through the CLI: exit code 2, ONE line on stderr
that names the bad value and the valid choices, no traceback, and no run folder left behind.

The whole matrix runs in-process through `regbench.cli.main` (the console script's entry
point); a sample also runs through the installed `regbench` executable in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


RUN_BAD_INPUT = [
    # (overrides, texts that must appear in the one-line message)
    # -- names (issue 2)
    (["dataset=imagenet"], ["imagenet", "digits", "mnist1d"]),
    (["model=transformer"], ["transformer", "mlp", "cnn"]),
    (["dropout=zoneout"], ["zoneout", "standard", "dropconnect"]),
    (["optim=lbfgs"], ["lbfgs", "adamw", "sgd"]),
    (["augment=autoaugment"], ["autoaugment", "cutout"]),
    (["augment.ops=[flip,shear]"], ["shear", "flip", "cutout"]),
    (["+experiment=nope"], ["nope", "mlp_dropout"]),
    (["model.activation=swish"], ["swish", "relu", "selu"]),
    # -- keys and types
    (["optimizer.lr=0.1"], ["optimizer", "optim"]),
    (["model.hiddn=[8]"], ["hiddn", "hidden"]),
    (["trainer.epochs=ten"], ["trainer.epochs", "ten", "Integer"]),
    (["dropout.p=half"], ["dropout.p", "half", "Float"]),
    (["model.batchnorm=maybe"], ["model.batchnorm", "maybe"]),
    # -- ranges
    (["dropout.p=1.0"], ["dropout.p=1.0", "[0, 1)"]),
    (["dropout.p=-0.1"], ["dropout.p=-0.1", "[0, 1)"]),
    (["dropout.p_input=1.5"], ["dropout.p_input=1.5", "[0, 1)"]),
    (["dropout.p_conv=2"], ["dropout.p_conv=2", "[0, 1)"]),
    (["optim.weight_decay=-1e-4"], ["optim.weight_decay", ">= 0"]),
    (["optim.lr=-0.1"], ["optim.lr=-0.1", "(0, inf)"]),
    (["optim.lr=0"], ["optim.lr=0", "(0, inf)"]),
    (["trainer.epochs=0"], ["trainer.epochs=0", ">= 1"]),
    (["trainer.batch_size=0"], ["trainer.batch_size=0", ">= 1"]),
    (["dataset.val_fraction=0"], ["dataset.val_fraction=0", "(0, 1)"]),
    (["dataset.val_fraction=1.2"], ["dataset.val_fraction=1.2", "(0, 1)"]),
    (["dataset.train_size=100000"], ["dataset.train_size=100000", "1.."]),
    (["reg.label_smoothing=1"], ["reg.label_smoothing=1", "[0, 1)"]),
    (["reg.l1=-1"], ["reg.l1", ">= 0"]),
    (["reg.max_norm=0"], ["reg.max_norm", "(0, inf)"]),
    (["augment=crop", "augment.crop_pad=-1"], ["crop_pad", "-1"]),
    (["eval.mc_samples=-1"], ["eval.mc_samples=-1", ">= 0"]),
    (["eval.mode=test"], ["test", "eval", "train"]),
    (["optim.schedule=linear"], ["linear", "cosine"]),
    (["trainer.device=tpu"], ["tpu", "auto", "cpu"]),
    (["trainer.device=cuda"] if not _cuda() else ["trainer.device=tpu"], ["available" if not _cuda() else "tpu"]),
    # -- incompatible combinations (issue 3)
    (["dropout=spatial"], ["spatial", "mlp", "standard"]),
    (["dropout=dropblock"], ["dropblock", "mlp", "standard"]),
    (["dropout=dropblock", "model=cnn", "dropout.block_size=4"], ["block_size=4", "odd"]),
    (["dropout.placement=middle"], ["middle", "before_norm"]),
    (["dropout=dropconnect", "dropout.mask=row"], ["row", "batch", "sample"]),
    (["dropout=dropblock", "model=cnn", "dropout.schedule=cubic"], ["cubic", "linear"]),
    (["augment=flip", "dataset=mnist1d", "dataset.num_samples=500"], ["flip", "sequence", "noise"]),
    (["augment=rotate", "dataset=mnist1d", "dataset.num_samples=500"], ["rotate", "sequence", "crop"]),
    (["dropout=standard", "dropout.per_layer=[0.1,0.2,0.3]"], ["per_layer", "model.hidden"]),
    (["model=cnn", "model.kernel_size=4"], ["kernel_size=4", "odd"]),
    # -- data and folders
    (["dataset=mnist", "dataset.root=nowhere"], ["mnist", "nowhere", "dataset.download=true"]),
    (["dataset=cifar10", "dataset.root=nowhere"], ["cifar10", "nowhere", "dataset.download=true"]),
    # (a results_dir that cannot hold folders is the machine's state, exit 1: tests/test_faults.py)
    # -- sweeps: a bad value anywhere in the grid stops the sweep before anything runs
    (["dropout=standard", "dropout.p=0.2,1.5", "-m"], ["dropout.p=1.5", "[0, 1)"]),
    (["-m", "dropout=standard,spatial"], ["spatial", "mlp"]),
]



def _assert_one_line(code: int, out: str, err: str, expected: list[str]) -> None:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("regbench: error: "), lines[0]
    assert "Traceback" not in err + out
    for text in expected:
        assert text in lines[0], (text, lines[0])


@pytest.mark.parametrize("overrides,expected", RUN_BAD_INPUT, ids=[" ".join(o) for o, _ in RUN_BAD_INPUT])
def test_run_bad_input(cli, tmp_path, overrides, expected):
    code, out, err = cli("run", *FAST, *overrides)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []  # no run folder, no sweep folder, nothing in the cwd


def _corrupt_run(root: Path) -> Path:
    run = root / "run-1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("dataset: {name: digits\n")  # unclosed flow mapping
    (run / "metrics.csv").write_bytes(b"\x00\xff garbage")
    (run / "summary.json").write_text('{"status": "compl')
    return run


def test_report_bad_input(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_one_line(*cli("report", "empty"), ["no runs", "empty"])
    _assert_one_line(*cli("report", "does/not/exist"), ["does/not/exist"])
    _corrupt_run(tmp_path / "corrupt")
    _assert_one_line(*cli("report", "corrupt"), ["corrupt"])
    assert not (tmp_path / "corrupt" / "report").exists() or not any((tmp_path / "corrupt" / "report").iterdir())
    (tmp_path / "afile").write_text("not a folder")
    _assert_one_line(*cli("report", "afile"), ["afile is a file", "folder of run folders"])


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_an_out_folder_that_is_a_file_is_one_line(cli, tmp_path, command, out):
    """--out naming a file (or a path below one) is the user's input: exit 2, one line (it was a traceback)."""
    from test_report import write_run

    for p in (0.0, 0.3):
        write_run(tmp_path / "a", p=p, seed=0)
    (tmp_path / "afile").write_text("not a folder")
    args = ["a"] if command == "report" else ["a", "--where", "dropout.p=0"]
    _assert_one_line(*cli(command, *args, "--out", out), [f"to {out}", "--out a folder"])
    assert (tmp_path / "afile").read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "afile"]  # no staging folder left either


@pytest.mark.parametrize("args,expected", [
    (["train"], ["train", "run, report, compare, list"]),
    (["list", "extra"], ["extra"]),
])
def test_command_bad_input(cli, args, expected):
    _assert_one_line(*cli(*args), expected)


INSTALLED_SAMPLE = [
    (["run", "+foo=1"], ["unknown key 'foo'", "valid keys", "seed"]),
    (["run", "-m", "+trainer.epochz=1", "seed=0,1"], ["unknown key 'trainer.epochz'", "did you mean trainer.epochs"]),
    (["run", "~seed"], ["~seed", "seed=VALUE"]),
    (["run", "model.hidden=[1000000,1000000]"], ["model.hidden=[1000000, 1000000]", "GiB", "free"]),  # no traceback
    (["run", "model=cnn", "model.channels=[100000,100000]"], ["model.channels=[100000, 100000]", "GiB"]),
    (["run", "-m", "sweep_name=..", "seed=0,1"], ["sweep_name='..'", "one folder name"]),  # no multirun.yaml above
    (["run", "-m", "dropout=standard", "dropout.p=interval(0,1)"], ["dropout.p=interval(0,1)", "range(start,stop"]),
    (["run", "dataset=imagenet"], ["imagenet", "digits"]),
    (["run", "dropout.p=1.5"], ["dropout.p=1.5"]),
    (["run", "-m", "seed=0,1", "model.hiddn=[3]"], ["hiddn", "hidden"]),
    (["run", "dataset=mnist", "dataset.root=nowhere"], ["nowhere"]),
    (["report", "nothing-here"], ["nothing-here"]),
    (["run", "logger=[csv,nosuch]"], ["nosuch", "mlflow"]),
    # a recipe shortened for a quick try: its second lr drop (epoch 136) would never happen
    (["run", "+experiment=cifar10_resnet20", "trainer.epochs=100", "dataset.root=."],
     ["optim.milestones=[91,136]", "epoch 136", "trainer.epochs=100", "1..99"]),
    # BatchNorm skips a batch of one: at batch size 1 a ResNet would "complete" without a single step
    (["run", "model=resnet", "model.depth=8", "trainer.batch_size=1"], ["trainer.batch_size=1", "batchnorm=false"]),
    (["run", "augment=color_jitter", "augment.saturation=0.5"], ["augment.saturation=0.5", "1-channel", "RGB"]),
    (["run", "-m", "augment=color_jitter", "augment.saturation=0.5,0.7"],
     ["augment.saturation=0.5", "1-channel", "in every cell of the sweep"]),
    (["run", "-m", "optim.schedule=multistep", "optim.milestones=[1],[5]", "trainer.epochs=3"],
     ["optim.milestones=[5]", "epoch 5", "in every cell with this value"]),
    # options, types and sweep-only settings (each was Hydra's usage block, OmegaConf's wording, or ignored)
    (["run", "--bogus"], ["unknown option '--bogus'", "valid options: -m, --multirun", "--config-dir"]),
    (["run", "-m", "seed=AUTO"], ["'AUTO'", "valid: an integer 0..", "or seed=auto in a sweep (-m)"]),
    (["run", "optim.schedule=multistep", "optim.milestones=5"],
     ["optim.milestones=5 is not a list; valid: a list, e.g. optim.milestones=[10,20]"]),
    (["run", "hydra.sweeper.max_seeds=5"], ["hydra.sweeper.max_seeds=5 only acts in a sweep", "regbench run -m"]),
    (["run", 'margin="test.acc=0.02"'], ['margin="test.acc=0.02" only acts in a sweep', "--margin"]),
]


@pytest.mark.parametrize("args,expected", INSTALLED_SAMPLE, ids=[" ".join(a) for a, _ in INSTALLED_SAMPLE])
def test_installed_executable(tmp_path, args, expected):
    exe = Path(sys.executable).with_name("regbench")
    assert exe.exists(), "regbench console script not installed next to the interpreter"
    proc = subprocess.run([str(exe), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    _assert_one_line(proc.returncode, proc.stdout, proc.stderr, expected)
    assert list(tmp_path.iterdir()) == []


REVIEW_BAD_INPUT = [
    (["optim.schedule=step", "optim.gamma=-1"], ["optim.gamma=-1", "(0, 1)"]),
    (["optim.schedule=step", "optim.step_size=2", "optim.gamma=1"], ["optim.gamma=1", "(0, 1)"]),  # no drop at all
    (["trainer.min_delta=-1"], ["trainer.min_delta", ">= 0"]),
    (["sweep_name=../escape"], ["sweep_name", "../escape", "folder name"]),
    (["sweep_name=grp/a"], ["sweep_name", "grp/a", "folder name"]),
    (["dropout=standard", "dropout.p=0.3", "model.hidden=[]"], ["dropout.p=0.3", "model.hidden=[]"]),
    # -- issue 31: empty values, Hydra's placement keys (each wrote outside results_dir), types named
    (["results_dir="], ["results_dir=''", "empty", "folder path"]),
    (["-m", "results_dir=", "seed=0,1"], ["results_dir=''", "empty"]),  # multirun.yaml went to /sweep-...
    (["-m", "results_dir='~/rb'", "seed=0,1"], ["results_dir='~/rb'", "$HOME"]),  # runs in ~/rb, index in ./~/rb
    (["hydra.run.dir=elsewhere"], ["hydra.run.dir", "results_dir=DIR", "sweep_name=NAME"]),
    (["-m", "hydra.sweep.dir=elsewhere", "seed=0,1"], ["hydra.sweep.dir", "results_dir=DIR"]),
    (["hydra.output_subdir=.hydra"], ["hydra.output_subdir", "results_dir=DIR"]),
    (["seed="], ["seed", "valid: an integer"]),
    (["-m", "seed=0,x"], ["seed", "'x'", "valid: an integer"]),
    (["dropout=standard", "dropout.p=abc"], ["dropout.p", "abc", "valid: a number"]),
    (["model.hidden=abc"], ["model.hidden=abc is not a list", "valid: a list, e.g. model.hidden=[256,256]"]),
    (["model.batchnorm=maybe"], ["model.batchnorm", "valid: true or false"]),
    (["-m", "seed=[]"], ["seed", "valid: an integer"]),
    (["-m", "seed=range(0,3,0)"], ["seed=range(0,3,0)", "step of 0"]),  # a ValueError traceback
    (["=3"], ["'=3' names no key", "key=value"]),  # a ValueError traceback in Hydra's defaults list
    (["-m", "seed=0,"], ["cannot parse the override 'seed=0,'", "key=a,b,c"]),  # named no override
    (["-m", "seed=choice()"], ["'seed=choice()'", "empty choice"]),
    (["seed"], ["'seed'", "missing EQUAL", "key=value"]),
]


@pytest.mark.parametrize("overrides,expected", REVIEW_BAD_INPUT, ids=[" ".join(o) for o, _ in REVIEW_BAD_INPUT])
def test_more_run_bad_input(cli, tmp_path, overrides, expected):
    code, out, err = cli("run", *FAST, *overrides)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []


# Issue 13: settings that cannot take effect (regbench/rules/active.py), repeated keys, seeds.
NO_EFFECT_BAD_INPUT = [
    (["dropout.p=0.3"], ["dropout.p=0.3", "no effect", "dropout=none", "dropout=", "standard"]),
    (["-m", "dropout.p=0,0.1,0.3"], ["dropout.p=0.1", "dropout=none", "standard", "every cell"]),
    (["dropout.p_input=0.2"], ["dropout.p_input=0.2", "dropout=none"]),
    (["dropout.per_layer=[0.1]"], ["dropout.per_layer=[0.1]", "dropout=none"]),
    (["dropout=standard", "dropout.p_conv=0.2"], ["dropout.p_conv=0.2", "model=mlp", "model=cnn"]),
    (["dropout=standard", "dropout.block_size=5"], ["dropout.block_size=5", "dropout=dropblock"]),
    (["dropout=standard", "dropout.schedule=linear"], ["dropout.schedule=linear", "dropout=dropblock"]),
    (["dropout=standard", "dropout.mask=sample"], ["dropout.mask=sample", "dropout=dropconnect"]),
    (["dropout=dropconnect", "dropout.p_input=0.2"], ["dropout.p_input=0.2", "dropconnect", "standard"]),
    (["dropout=standard", "dropout.placement=before_norm"], ["placement=before_norm", "model.batchnorm=true"]),
    (["dropout=standard", "dropout.p=0.3", "dropout.per_layer=[0.1]"], ["dropout.p=0.3", "per_layer"]),
    (["model.channels=[8]"], ["model.channels=[8]", "model=mlp", "model=cnn"]),
    (["model.kernel_size=5"], ["model.kernel_size=5", "model=cnn"]),
    (["optim.momentum=0.5"], ["optim.momentum=0.5", "optim=adam", "optim=sgd"]),
    (["optim.nesterov=true"], ["optim.nesterov=true", "optim=sgd"]),
    (["optim=sgd", "optim.momentum=0", "optim.nesterov=true"], ["optim.nesterov=true", "momentum"]),
    (["optim.decoupled=true"], ["optim.decoupled=true", "optim=sgd"]),
    (["optim.gamma=0.5"], ["optim.gamma=0.5", "optim.schedule=none", "optim.schedule=step"]),
    (["optim.schedule=cosine", "optim.step_size=3"], ["optim.step_size=3", "cosine", "step"]),
    (["optim.decay_norm_and_bias=true"], ["decay_norm_and_bias=true", "weight_decay"]),
    (["augment.crop_pad=3"], ["augment.crop_pad=3", "augment=crop"]),
    (["augment=flip", "augment.cutout_size=2"], ["augment.cutout_size=2", "[flip]", "cutout"]),
    (["augment.mixup_alpha=0.4"], ["augment.mixup_alpha=0.4", "mixup"]),
    (["dataset.num_samples=500"], ["dataset.num_samples=500", "dataset=digits", "mnist1d", "synthetic"]),
    (["dataset.noise=2"], ["dataset.noise=2", "synthetic"]),
    (["dataset.download=true"], ["dataset.download=true", "mnist", "cifar10"]),
    (["eval.mc_every_epoch=true"], ["eval.mc_every_epoch=true", "eval.mc_samples"]),
    (["trainer.min_delta=0.01"], ["trainer.min_delta=0.01", "trainer.patience"]),
    # a key given twice: Hydra would let the last one win
    (["-m", "dropout=standard", "dropout.p=0.1,0.2", "dropout.p=0.3"], ["dropout.p", "twice", "dropout.p=0.3"]),
    (["seed=1", "seed=2"], ["seed", "twice"]),
    (["dropout=standard", "+dropout.p=0.3", "dropout.p=0.1"], ["dropout.p", "twice"]),
    # seeds torch cannot take (or would alias)
    (["seed=-1"], ["seed=-1", "0..18446744073709551615"]),
    (["seed=18446744073709551616"], ["seed=18446744073709551616", "0.."]),
    (["dataset.split_seed=-3"], ["dataset.split_seed=-3", "0.."]),
]


@pytest.mark.parametrize("overrides,expected", NO_EFFECT_BAD_INPUT, ids=[" ".join(o) for o, _ in NO_EFFECT_BAD_INPUT])
def test_no_effect_bad_input(cli, tmp_path, overrides, expected):
    code, out, err = cli("run", *FAST, *overrides)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []


# `regbench run`'s options: Hydra's and regbench's (cli/commands.py OPTIONS); anything else was Hydra's usage block
OPTION_BAD_INPUT = [
    (["--bogus"], ["unknown option '--bogus'", "valid options: -m, --multirun, -v, --verbose", "--config-dir",
                   "--info", "--shell-completion"]),
    (["--hydra"], ["unknown option '--hydra'", "did you mean --hydra-help?"]),  # argparse read an abbreviation
    (["--config_dir", "my_configs"], ["'--config_dir'", "did you mean --config-dir?"]),
    (["-x"], ["unknown option '-x'", "valid options"]),
    (["--cfg", "yaml"], ["--cfg 'yaml' is not valid", "job, hydra, all"]),
    (["--cfg=yaml"], ["--cfg 'yaml' is not valid", "job, hydra, all"]),
    (["--info=nothing"], ["--info 'nothing' is not valid", "defaults, defaults-tree"]),
    (["-cd"], ["-cd needs a value", "-cd VALUE"]),
    (["--resolve=yes"], ["--resolve takes no value", "--resolve alone"]),
    (["--config-dir", "nowhere"], ["--config-dir", "nowhere is not a folder"]),  # was a traceback
    (["--experimental-rerun", "config.pickle"], ["--experimental-rerun", "regbench does not write", "command"]),
    (["-5"], ["cannot parse the override '-5'"]),  # a negative number is a (bad) override, not an option
    (["-m", "seed=-1,0"], ["seed=-1", "0.."]),  # a negative value stays a value
]


@pytest.mark.parametrize("args,expected", OPTION_BAD_INPUT, ids=[" ".join(a) for a, _ in OPTION_BAD_INPUT])
def test_option_bad_input(cli, tmp_path, args, expected):
    code, out, err = cli("run", *FAST, *args)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []


# Values of the wrong type: the key's valid values in words, and for a list key an example that fits it
TYPE_BAD_INPUT = [
    (["seed=AUTO"], ["seed", "'AUTO'", "valid: an integer 0..18446744073709551615, or seed=auto in a sweep (-m)"]),
    (["-m", "seed=AUTO"], ["'AUTO'", "or seed=auto in a sweep (-m)"]),  # names are lower case, as everywhere
    (["optim.schedule=multistep", "optim.milestones=5"],
     ["optim.milestones=5 is not a list; valid: a list, e.g. optim.milestones=[10,20]"]),
    (["-m", "optim.schedule=multistep", "optim.milestones=5,8"], ["optim.milestones=5 is not a list"]),
    (["augment.ops=flip"], ["augment.ops=flip is not a list", "e.g. augment.ops=[flip,crop]"]),
    (["model=cnn", "model.channels=16"], ["model.channels=16 is not a list", "e.g. model.channels=[32,64]"]),
]


@pytest.mark.parametrize("overrides,expected", TYPE_BAD_INPUT, ids=[" ".join(o) for o, _ in TYPE_BAD_INPUT])
def test_type_bad_input(cli, tmp_path, overrides, expected):
    code, out, err = cli("run", *FAST, *overrides)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []


def test_every_list_key_has_an_example_that_composes(make_cfg):
    from omegaconf import OmegaConf

    from regbench.rules.config import LIST_KEYS, list_example

    assert "optim.milestones" in LIST_KEYS and "model.hidden" in LIST_KEYS
    for key in LIST_KEYS:
        example = list_example(key)
        assert example, key  # a new list key without a default needs an entry in rules/config.py LIST_EXAMPLES
        value = OmegaConf.select(make_cfg(f"{key}={example}"), key)
        assert f"[{','.join(map(str, value))}]" == example, key


# Settings that only act in a sweep, given to a single run (no -m): each was silently ignored
SWEEP_ONLY_BAD_INPUT = [
    (["hydra.sweeper.max_seeds=5"], ["hydra.sweeper.max_seeds=5 only acts in a sweep",
                                     "valid: regbench run -m <grid> hydra.sweeper.max_seeds=5"]),
    (["hydra.sweeper.cells_per_job=4"], ["hydra.sweeper.cells_per_job=4 only acts in a sweep"]),
    (["hydra.launcher.max_cells=2"], ["hydra.launcher.max_cells=2 only acts in a sweep"]),
    (["hydra/launcher=basic"], ["hydra/launcher=basic only acts in a sweep", "regbench run -m"]),
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=joblib only acts in a sweep"]),
    (['margin="test.acc=0.02"'], ['margin="test.acc=0.02" only acts in a sweep', "no report",
                                  "regbench report PATH --margin"]),
    (["report_format=[png,svg]"], ["report_format=[png,svg] only acts in a sweep", "regbench report PATH --format"]),
    (["seed=0,1"], ["seed=0,1 lists several values", "regbench run -m <grid> seed=0,1"]),  # was "Ambiguous value"
    (["model.hidden=16,32"], ["model.hidden=16,32 lists several values", "one list: model.hidden=[16,32]"]),
    (["hydra.mode=MULTIRUN", "seed=0,1"], ["hydra.mode=MULTIRUN", "regbench run -m"]),  # wrote <results_dir>/None
]


@pytest.mark.parametrize("overrides,expected", SWEEP_ONLY_BAD_INPUT, ids=[" ".join(o) for o, _ in SWEEP_ONLY_BAD_INPUT])
def test_sweep_only_settings_in_a_single_run(cli, tmp_path, overrides, expected):
    code, out, err = cli("run", *FAST, *overrides)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []


def test_report_without_a_path_is_one_line(cli):
    _assert_one_line(*cli("report"), ["PATH", "usage: regbench report"])


# -- issue 11: the evaluation protocol and `regbench compare`
PROTOCOL_BAD_INPUT = [
    (["trainer.select=nosuch"], ["trainer.select='nosuch'", "final, val_loss, val_acc"]),
    (["trainer.patience=3", "trainer.monitor=val_f1"], ["trainer.monitor='val_f1'", "val_loss, val_acc"]),
    (["trainer.monitor=val_acc"], ["trainer.monitor=val_acc", "trainer.patience"]),
    (["trainer.restore_best=false"], ["trainer.restore_best", "trainer.select", "final, val_loss, val_acc"]),
    (["-m", "trainer.select=final,best"], ["trainer.select='best'", "final, val_loss, val_acc"]),
]


@pytest.mark.parametrize("overrides,expected", PROTOCOL_BAD_INPUT, ids=[" ".join(o) for o, _ in PROTOCOL_BAD_INPUT])
def test_protocol_bad_input(cli, tmp_path, overrides, expected):
    code, out, err = cli("run", *FAST, *overrides)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []


def test_compare_bad_input(cli, tmp_path):
    from test_report import write_run

    for p in (0.0, 0.3):
        for s in (0, 1):
            write_run(tmp_path / "a", p=p, seed=s)
    write_run(tmp_path / "b", p=0.5, seed=0)
    (tmp_path / "empty").mkdir()
    before = sorted(tmp_path.rglob("*"))
    cases = [
        (["a", "nowhere"], ["nowhere", "valid"]),
        (["a", "empty"], ["no runs", "empty"]),
        (["a", "b"], ["no configuration in common", "dropout.p"]),
        (["a", "--where", "dropout.p=0", "--metric", "acc"], ["--metric 'acc'", "test.acc", "final.val_acc"]),
        (["a", "--where", "dropout.q=0"], ["dropout.q", "dropout.p"]),
        (["a", "--where", "dropout.p=0.7"], ["dropout.p=0.7", "0, 0.3"]),
        (["a"], ["--where", "usage: regbench compare"]),
        (["a", "a"], ["a and a hold the same runs", "two folders of different runs"]),  # was: all `equivalent`
        (["a", str(next((tmp_path / "a").iterdir()))], ["hold the same runs"]),
    ]
    for args, expected in cases:
        _assert_one_line(*cli("compare", *args), expected)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: no compare/ folder anywhere


LOGGER_BAD_INPUT = [
    (["logger=nosuch"], ["nosuch", "csv, mlflow, tensorboard"]),
    (["logger=[csv,nosuch]"], ["nosuch", "csv, mlflow, tensorboard"]),
    (["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9"],
     ["http://127.0.0.1:9", "unreachable", "sqlite"]),
    (["logger=[csv,mlflow]", "logger.mlflow.tracking_uri=file:./mlruns"], ["file:./mlruns", "file store", "sqlite"]),
    (["logger=mlflow", "logger.mlflow.tracking_uri=sqlite:////proc/x/m.db"], ["sqlite:////proc/x/m.db", "writable"]),
    (["logger.mlflow.tracking_uri=sqlite:///m.db"], ["logger.mlflow.tracking_uri", "logger=[csv,mlflow]"]),
    (["logger=mlflow", "logger.mlflow.experiment= "], ["logger.mlflow.experiment", "non-empty"]),
    (["logger.mlflow.tracking_ur=x"], ["tracking_ur", "tracking_uri"]),
    (["-m", "seed=0,1", "logger=[csv,mlflow]", "logger.mlflow.tracking_uri=http://127.0.0.1:9"], ["unreachable"]),
]


@pytest.mark.parametrize("overrides,expected", LOGGER_BAD_INPUT, ids=[" ".join(o) for o, _ in LOGGER_BAD_INPUT])
def test_logger_bad_input(cli, tmp_path, overrides, expected):
    code, out, err = cli("run", *FAST, *overrides)
    _assert_one_line(code, out, err, expected)
    assert list(tmp_path.iterdir()) == []


def test_logger_missing_extra_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    code, out, err = cli("run", *FAST, "logger=[csv,mlflow]")
    _assert_one_line(code, out, err, ["logger=mlflow", 'pip install -e ".[mlflow]"', "logger=csv"])
    assert list(tmp_path.iterdir()) == []


def test_a_saturation_that_acts_in_some_cells_of_a_sweep_passes(cli, tmp_path):
    # the grid rule for the one check that needs the data: the 3-channel cell uses it, the 1-channel one ignores it
    code, out, err = cli("run", "-m", "dataset=synthetic", "dataset.shape=[1,8,8],[3,8,8]", "dataset.train_size=100",
                         "augment=color_jitter", "augment.saturation=0.5", "trainer.epochs=1", "trainer.progress=false",
                         "report=false", f"results_dir={tmp_path / 'runs'}")
    assert code == 0 and "2 completed" in out, err
