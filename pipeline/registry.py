"""Named registries for the project's open sets: strategies, variants, datasets, backbones.

Each open set is registered in one place (its package's ``__init__`` imports the built-in
modules, which register themselves) and discovered from there by every consumer: evaluation,
report, search, CLI help and params validation. Adding an entry is one new module plus one
registration line; nothing else lists the names.

    STRATEGIES = Registry("inference strategy", "pipeline/retrieval/strategies")

    @STRATEGIES.register("dsl")
    class DualSoftmax: ...

    STRATEGIES.get("dsl")  # -> the entry; an unknown name raises RegistryError listing the known ones
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError, ValueError):
    """An unknown or duplicate name; the message lists what is registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the sentence as is
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """An ordered name -> entry mapping with clear errors.

    ``kind`` names what is registered ("inference strategy") and ``home`` where built-ins live,
    so an error can say where to add one.
    """

    def __init__(self, kind: str, home: str) -> None:
        self.kind, self.home = kind, home
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, replace: bool = False):
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers its target."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def add(obj: T) -> T:
            if name in self._entries and not replace:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())} "
                                f"(add one in {self.home})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.contextmanager
    def temporarily(self, name: str, entry: T) -> Iterator[T]:
        """Register ``entry`` for the duration of a block (tests, plugins tried out)."""
        previous = self._entries.get(name)
        self.register(name, entry, replace=True)
        try:
            yield entry
        finally:
            if previous is None:
                self.unregister(name)
            else:
                self._entries[name] = previous


def choices_help(registry: Registry, describe: Callable[[object], str] | None = None) -> str:
    """``name (description), ...`` for CLI help and error messages."""
    parts = []
    for name, entry in registry.items():
        text = describe(entry) if describe else (getattr(entry, "description", "") or "")
        parts.append(f"{name} ({text})" if text else name)
    return ", ".join(parts)
