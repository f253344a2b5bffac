"""The docs collector itself (tests/e2e/doc_commands.py), on made-up documents: what it collects, how it
shrinks a command, which marker does what. No process is started here."""

from __future__ import annotations

import pytest
from doc_commands import output_matches, parse, plan, shrink_regbench_run, split_comment, words

pytestmark = pytest.mark.e2e

DOC = '''# Title

```bash
regbench run -m dropout=standard \\
    dropout.p=0,0.5 seed=0,1,2     # a grid; with a # in the comment
# a full-line comment is not a command

regbench report 'runs/a # b'
```

```console
$ regbench run dropout.p=2    # exit code 2
regbench: error: dropout.p=2 is out of range
```

```python
print("hi")
```

```yaml
# file: conf/dropout/mine.yaml
name: mine
```

```toml
[not]
collected = true
```
'''


def test_blocks_become_commands_in_document_order():
    found = parse("doc.md", DOC)
    assert [(c.line, c.kind) for c in found] == [(4, "shell"), (8, "shell"), (12, "console"), (17, "python"),
                                                 (21, "file")]
    grid, report, console, python, file = found
    assert grid.text == "regbench run -m dropout=standard dropout.p=0,0.5 seed=0,1,2"
    assert grid.comment == "a grid; with a # in the comment"
    assert report.text == "regbench report 'runs/a # b'" and report.comment == ""
    assert console.expected == ("regbench: error: dropout.p=2 is out of range",)
    assert python.text == 'print("hi")\n'
    assert (file.path, file.text) == ("conf/dropout/mine.yaml", "name: mine\n")
    assert grid.id == "doc.md:4 regbench run -m dropout=standard dropout.p=0,0.5 seed=0,1,2"


def test_an_unclosed_block_or_continuation_is_an_error_not_a_silent_drop():
    with pytest.raises(ValueError, match="never closed"):
        parse("doc.md", "```bash\nregbench list\n")
    with pytest.raises(ValueError, match="continuation"):
        parse("doc.md", "```bash\nregbench list \\\n```\n")


def test_comments_and_words_respect_quotes():
    assert split_comment('eval "$(regbench run -sc install=bash)"   # bash') == (
        'eval "$(regbench run -sc install=bash)"', "bash")
    assert split_comment("a=1#2 b") == ("a=1#2 b", "")  # a # inside a word starts no comment
    assert words("""cp "$(python -c 'import x; print(1)')/a b" c  'd e'""") == [
        "cp", """"$(python -c 'import x; print(1)')/a b\"""", "c", "'d e'"]


@pytest.mark.parametrize("written, run, notes", [
    ("regbench run", "regbench run trainer.epochs=1", ["+trainer.epochs=1"]),
    ("regbench run model=cnn trainer.epochs=20 seed=3", "regbench run model=cnn trainer.epochs=1 seed=3",
     ["trainer.epochs=20 -> trainer.epochs=1"]),
    ("regbench run -m dropout.p=0,0.5 seed=0,1,2,3", "regbench run -m dropout.p=0,0.5 seed=0,1 trainer.epochs=1",
     ["+trainer.epochs=1", "seed=0,1,2,3 -> seed=0,1"]),
    ("regbench run -m seed=auto hydra.sweeper.max_seeds=10 dropout.p=0,0.5",
     "regbench run -m seed=auto hydra.sweeper.max_seeds=3 dropout.p=0,0.5 trainer.epochs=1",
     ["+trainer.epochs=1", "hydra.sweeper.max_seeds=10 -> hydra.sweeper.max_seeds=3"]),
    ("REGBENCH_PLUGINS=$PWD/m.py regbench run dropout=m", "REGBENCH_PLUGINS=$PWD/m.py regbench run dropout=m "
     "trainer.epochs=1", ["+trainer.epochs=1"]),
    ("regbench run -m hydra/launcher=joblib dropout.p=0,0.1,0.3 model.hidden=[8,8] optim=adam,sgd",
     "regbench run -m hydra/launcher=joblib dropout.p=0,0.1 model.hidden=[8,8] optim=adam,sgd trainer.epochs=1",
     ["+trainer.epochs=1", "dropout.p=0,0.1,0.3 -> dropout.p=0,0.1"]),  # a process per job: two values a list
    ("regbench run -m dropout.p=0,0.1,0.3", "regbench run -m dropout.p=0,0.1,0.3 trainer.epochs=1",
     ["+trainer.epochs=1"]),  # in-process launchers keep the grid
    ("regbench run --help", "regbench run --help", []),
    ("regbench report runs/", "regbench report runs/", []),
])
def test_shrinking_sets_one_epoch_and_fewer_seeds(written, run, notes):
    assert shrink_regbench_run(written) == (run, notes)


def test_a_cluster_marker_runs_the_local_launcher_without_the_slurm_keys():
    [command] = parse("doc.md", "```bash\nregbench run -m hydra/launcher=slurm_example hydra.launcher.partition=gpu "
                                "hydra.launcher.timeout_min=60 seed=0,1   # needs SLURM: tested as "
                                "hydra/launcher=submitit_local\n```\n")
    p = plan(command)
    assert not p.skip
    assert p.script == ("regbench run -m hydra/launcher=submitit_local hydra.launcher.timeout_min=60 seed=0,1 "
                        "trainer.epochs=1")


def test_markers_skip_with_their_reason_and_set_the_exit_code():
    skipped, failing = parse("doc.md", "```bash\nregbench run -m hydra/launcher=ray trainer.device=cuda   "
                                       "# needs a GPU cluster: not tested\n"
                                       "regbench run -m dropout.p=0,0.5   # exit code 2\n```\n")
    assert "needs a GPU cluster" in plan(skipped).skip
    assert plan(failing).exit_code == 2 and not plan(failing).skip


def test_a_command_without_a_rule_fails_rather_than_vanishing():
    [command] = parse("doc.md", "```bash\ncurl https://example.org | sh\n```\n")
    with pytest.raises(ValueError, match="no rule for this command"):
        plan(command)
    [make] = parse("doc.md", "```bash\nmake test\n```\n")
    assert plan(make).script == "make -n test" and plan(make).where == "checkout"
    [pip] = parse("doc.md", '```bash\npip install -e ".[ray]"\n```\n')
    assert plan(pip).skip


def test_console_output_matches_line_for_line_with_wildcards():
    out = ["a: 1", "b", "c: done in 3.2 s"]
    assert output_matches(("a: 1", "b", "c: done in … s"), out)
    assert output_matches(("a: 1", "..."), out)
    assert not output_matches(("a: 1", "b"), out)  # an extra line the document does not show
    assert not output_matches(("a: 2", "..."), out)
