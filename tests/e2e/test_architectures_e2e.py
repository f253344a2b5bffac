"""ResNet and ViT sweeps from the shell, as a user types them: a fresh `regbench` process, the default launcher,
each sweep's cells trained as one stack (stack_cells > 1) for drop path, WRN dropout, DropBlock and attention
dropout, on 1-D signals and 2-D images, with the sweep's report; and the refusals of keys that cannot act."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_env import require_console_script, shell, tail

pytestmark = pytest.mark.e2e

SMALL = "trainer.epochs=1 dataset.train_size=192 sweep_name=s"
SWEEPS = {  # id -> (the command's arguments, cells); the first with the sweep's report, the others without (time)
    "resnet-1d-drop_path-wrn": ("model=resnet model.depth=8 dataset=mnist1d dataset.num_samples=600 dropout=standard "
                                "dropout.p=0 dropout.p_conv=0,0.3 reg.drop_path=0,0.2", 4),
    "resnet-2d-dropblock": ("model=resnet model.depth=8 model.preact=true dropout=dropblock dropout.p=0 "
                            "dropout.p_conv=0,0.2 report=false", 2),
    # 2-D images: tests/test_architectures.py
    "vit-1d-attention-drop_path": ("model=vit model.depth=2 model.dim=16 model.heads=2 model.patch=4 dataset=mnist1d "
                                   "dataset.num_samples=600 dropout=standard dropout.p=0 dropout.p_attn=0,0.2 "
                                   "reg.drop_path=0,0.1 report=false", 4),
}


@pytest.fixture(autouse=True)
def _console_script():
    require_console_script()


@pytest.mark.parametrize("sweep", SWEEPS)
def test_a_residual_sweep_trains_as_one_stack_from_the_shell(sweep, tmp_path):
    args, cells = SWEEPS[sweep]
    done = shell(f"regbench run -m {args} {SMALL}", tmp_path)
    assert done.code == 0, tail(done.output)
    assert f"sweep finished: {cells} runs: {cells} completed" in done.output
    summaries = [json.loads(p.read_text()) for p in sorted(Path(tmp_path, "runs", "s").glob("*/summary.json"))]
    assert [s["stack_cells"] for s in summaries] == [cells] * cells  # one stack: nothing trained alone
    assert len({s["test"]["acc"] for s in summaries} | {s["final"]["train_loss"] for s in summaries}) > cells
    assert (tmp_path / "runs" / "s" / "report" / "report.md").is_file() == ("report=false" not in args)


# a sweep's key and a single run's dropout type; every refusal is also tested in-process (tests/test_architectures.py)
@pytest.mark.parametrize(("command", "message"), [
    ("regbench run -m model=resnet dropout=standard dropout.p_attn=0,0.1",
     "regbench: error: dropout.p_attn=0.1 has no effect with model=resnet"),
    ("regbench run model=vit dropout=spatial", "regbench: error: dropout=spatial does not act on model=vit"),
])
def test_a_key_that_cannot_act_is_refused_from_the_shell(command, message, tmp_path):
    done = shell(command, tmp_path)
    assert done.code == 2, tail(done.output)
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.output
    assert not (tmp_path / "runs").exists()  # nothing half-written
