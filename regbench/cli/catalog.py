"""What `regbench list` shows: every name a user can pick, read from the registries and conf/."""

from __future__ import annotations

from importlib import resources


def config_names(group: str) -> list[str]:
    folder = resources.files("regbench.conf").joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def catalog() -> dict[str, list[str]]:
    from regbench.data import DATASETS
    from regbench.data.augment import AUGMENTS
    from regbench.models import ACTIVATIONS
    from regbench.records.loggers import LOGGERS
    from regbench.regularizers import DROPOUTS
    from regbench.rules.config import MODELS, OPTIMIZERS, SCHEDULES

    return {
        "datasets": DATASETS.names(),
        "models": list(MODELS),
        "activations": sorted(ACTIVATIONS),
        "dropout": DROPOUTS.names(),
        "optimizers": list(OPTIMIZERS),
        "lr schedules": list(SCHEDULES),
        "augmentations": config_names("augment"),
        "augment ops": AUGMENTS.names(),
        "experiments": config_names("experiment"),
        "loggers": list(LOGGERS),
    }
