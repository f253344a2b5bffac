"""Where dropout types come from: every module of this package, installed plugins, user files.

`DROPOUTS` calls `load()` before each lookup, so a new type is found without editing a list:
1. every module in regbench/regularizers/ (a new file there is picked up as it is);
2. installed packages that declare an entry point in the group `regbench.regularizers`
   (`[project.entry-points."regbench.regularizers"] mine = "my_pkg.my_dropout"`);
3. the environment variable REGBENCH_PLUGINS: module names or paths to .py files, separated by
   os.pathsep (`REGBENCH_PLUGINS=./my_dropout.py regbench run dropout=mine`). It is read in every
   process, so parallel launchers' workers (joblib, submitit, Ray: same environment) find it too.
Importing a module is what registers its types (the `@register` decorator in base.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

from regbench.core.errors import ConfigError

ENV = "REGBENCH_PLUGINS"  # module names or .py paths, os.pathsep-separated
ENTRY_POINTS = "regbench.regularizers"  # entry point group of installed plugin packages
PACKAGE = "regbench.regularizers"

_state = {"package": False, "env": None}  # what was loaded already (load() runs before every lookup)


def load() -> None:
    if not _state["package"]:
        _state["package"] = True
        package = importlib.import_module(PACKAGE)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{PACKAGE}.{info.name}")
        for entry in entry_points(group=ENTRY_POINTS):
            entry.load()
    wanted = os.environ.get(ENV, "")
    if wanted != _state["env"]:
        _state["env"] = wanted
        for item in filter(None, (part.strip() for part in wanted.split(os.pathsep))):
            import_plugin(item)


def import_plugin(item: str):
    """Import a module by name, or a .py file by path (registered as `regbench_plugin_<stem>`)."""
    if item.endswith(".py") or os.sep in item:
        path = Path(item).expanduser().resolve()
        name = f"regbench_plugin_{path.stem}"
        if name in sys.modules:
            return sys.modules[name]
        if not path.is_file():
            raise ConfigError(f"{ENV} entry {item!r}: no such file; valid: paths to .py files or module names, "
                              f"separated by {os.pathsep!r}")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before executing it: pickling (parallel launchers) finds it by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    try:
        return importlib.import_module(item)
    except ModuleNotFoundError as exc:
        if exc.name != item.split(".")[0] and exc.name != item:
            raise  # the plugin itself imports something missing: that error is the useful one
        raise ConfigError(f"{ENV} entry {item!r}: no module named {exc.name!r}; valid: importable module names "
                          f"or paths to .py files, separated by {os.pathsep!r}") from None
