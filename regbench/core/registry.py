"""Name -> object registries filled by a decorator (docs/architecture.md, "Registries").

A registry is a plain dict with two rules: registering a name twice raises, and
looking up an unknown name raises a ConfigError that lists the valid names, so the
CLI can print it as the one-line error users see. A registry may have a `loader`: called
before every lookup, it imports the modules that register into it (on first use, and again
when the places it reads change), so nobody has to import them by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from regbench.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind  # what the names are, for error messages: "dataset", "dropout" ...
        self._items: dict[str, T] = {}
        self._loader = loader  # imports the modules that register here (cheap once they are imported)

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def _load(self) -> None:
        if self._loader is not None:
            self._loader()

    def unregister(self, name: str) -> None:
        """Forget a name (tests and interactive sessions that register temporary types)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)
