"""Hydra's and OmegaConf's errors as the one line the command line prints: the bad value or key and what is
valid there, the file of a user config that fails to compose, a launcher that cannot start. None for what is
not a user error (a real bug keeps its traceback)."""

from __future__ import annotations

import re
from pathlib import Path


def config_dirs(argv: list[str]) -> list[Path]:
    """Where Hydra looks for config files: the user's --config-dir, then the package's conf/."""
    import regbench.conf

    dirs = [Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in ("--config-dir", "-cd")]
    return [*dirs, Path(regbench.conf.__file__).parent]


def config_file(name: str, dirs: list[Path]) -> str:
    """`experiment/my_exp` -> the file it was read from (`my_configs/experiment/my_exp.yaml`)."""
    return next((str(d / f"{name}.yaml") for d in dirs if (d / f"{name}.yaml").is_file()), f"{name}.yaml")


# Hydra's message for a config file that fails the schema: "In 'experiment/x': ValidationError raised while
# composing config:", then OmegaConf's reason and "full_key: trainer.epochs" on the following lines.
_IN_FILE = re.compile(r"In '([^']+)': (\w+) raised while composing config:")


def _file_error(message: str, dirs: list[Path]) -> str | None:
    """One line naming the file, the key and the reason, for an error in a config file (a user's experiment)."""
    from regbench.rules.config import unknown_key_message

    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    match = _IN_FILE.match(lines[0]) if lines else None
    if match is None:
        return None
    name, kind = match.groups()
    key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    reason = lines[1] if len(lines) > 1 else kind
    where = config_file(name, dirs)
    if kind in ("ConfigKeyError", "ConfigAttributeError") and key:
        return f"{where}: {unknown_key_message(key)}"
    return f"{where}: {key + ': ' if key else ''}{reason}"


def yaml_error_message(exc: BaseException) -> str | None:
    """A config file that is not valid YAML: its path, line, column and what the parser expected."""
    import yaml

    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return None
    mark = exc.problem_mark
    return f"cannot parse {mark.name} (line {mark.line + 1}, column {mark.column + 1}): {exc.problem}"


def hydra_error_message(exc: BaseException, dirs: list[Path] | None = None) -> str | None:
    """One line for a config error raised by Hydra/OmegaConf while composing; None for a real bug."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
        SearchPathException,
    )
    from omegaconf.errors import OmegaConfBaseException

    from regbench.sweeps.launchers import EXTRA_LAUNCHERS

    if isinstance(exc, SearchPathException) and "config directory" in str(exc):  # --config-dir: no such folder
        missing = re.search(r"'([^']*)'", str(exc))
        return (f"--config-dir {missing.group(1) if missing else ''} is not a folder; valid: a folder holding your "
                "configs, e.g. my_configs/ with experiment/my_exp.yaml")
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, name = str(exc.missing_cfg_file).rpartition("/")
        options = exc.options or _group_options(group)  # Hydra lists none for a list selection (logger=[csv,x])
        if group == "hydra/launcher" and name in EXTRA_LAUNCHERS:  # a launcher plugin not installed
            return f'hydra/launcher={name} needs the optional extra: pip install -e ".[{EXTRA_LAUNCHERS[name]}]"'
        if group:
            return f"unknown {group} {name!r}; valid choices: {', '.join(options)}"
        return str(exc).splitlines()[0]
    if isinstance(exc, ConfigCompositionException):
        in_file = _file_error(str(exc), dirs or [])
        if in_file is not None:
            return in_file
    if isinstance(exc, (ConfigCompositionException, OverrideParseException, OmegaConfBaseException)):
        cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            return _omegaconf_message(cause)
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        if lines and ("Could not override" in lines[0] or "Could not append" in lines[0]):
            return " ".join(lines[:2])
        return lines[0] if lines else type(exc).__name__
    return None


def override_parse_message(exc) -> str:
    """Hydra's OverrideParseException (several lines, the grammar's token list) as one line naming the override."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("See https")]
    reasons = [ln for ln in lines if not ln.startswith("Error parsing override")]
    reason = (reasons[0] if reasons else "").split(" expecting {")[0]
    if reason.startswith("LexerNoViableAltException") or reason == "^":
        reason = "a character the grammar does not allow there"
    return (f"cannot parse the override {exc.override!r}{': ' + reason if reason else ''}; valid: key=value, a sweep "
            "key=a,b,c or range(start,stop[,step]) with -m, +key=value to add an optional key; quote a value with "
            "spaces or commas: key='a b'")


def _group_options(group: str) -> list[str]:
    """The option names of one of our config groups (conf/<group>/*.yaml); [] for Hydra's own."""
    from regbench.cli.catalog import config_names

    try:
        return config_names(group)
    except OSError:
        return []


def launcher_error_message(exc: BaseException) -> str | None:
    """submitit_slurm on a machine without SLURM fails inside the plugin with a RuntimeError."""
    if isinstance(exc, RuntimeError) and "srun" in str(exc):
        return ("hydra/launcher=submitit_slurm needs SLURM (no srun on this machine); "
                "valid here: hydra/launcher=basic, joblib, submitit_local")
    if isinstance(exc, ValueError) and str(exc).startswith("Only one of --run"):  # e.g. --cfg with --info
        return f"{exc}; valid: one of them (with -m, --cfg job prints each cell's config)"
    return None


def _omegaconf_message(err) -> str:
    """Name the key and what is valid there: the schema's keys for an unknown key, the type otherwise."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from regbench.rules.config import unknown_key_message
    from regbench.rules.protocol import RENAMED

    key = str(err.full_key)
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and key in RENAMED:
        return f"{key} no longer exists; use {RENAMED[key]}"
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        return unknown_key_message(key)
    first = str(err.msg).strip().splitlines()[0]
    wanted = _TYPE_WANTED.search(first)
    wanted = next(g for g in wanted.groups() if g) if wanted else None
    if wanted == "ListConfig":  # OmegaConf: "Invalid value assigned: int is not a ListConfig, list or tuple."
        from regbench.rules.config import list_example

        example = list_example(key)
        return (f"{key}={_override_text(err.value)} is not a list; valid: a list"
                + (f", e.g. {key}={example}" if example else ""))
    valid = _valid_type(key, wanted)
    return f"{key}: {first.rstrip('.')}; valid: {valid}" if valid else f"{key}: {first}"


def _override_text(value) -> str:
    """A value as the command line wrote it: `5`, `abc`, `true`."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _valid_type(key: str, wanted: str | None) -> str | None:
    """What is valid for a value of the wrong type: the type, in words; for the seed also its range and seed=auto."""
    if key == "seed" and wanted == "Integer":
        from regbench.rules.validate import MAX_SEED
        from regbench.sweeps.auto_seeds import AUTO

        return f"an integer 0..{MAX_SEED}, or seed={AUTO} in a sweep (-m)"
    return VALID_TYPES.get(wanted)


# OmegaConf's wording of a value of the wrong type ("... could not be converted to Integer", "... is not a valid
# bool", "... is not a ListConfig, list or tuple") -> what is valid there, in the line's words (a list: with an
# example that fits the key, rules/config.list_example)
_TYPE_WANTED = re.compile(r"converted to (\w+)|not a valid (bool)|(ListConfig)")
VALID_TYPES = {"Integer": "an integer", "Float": "a number", "bool": "true or false"}
