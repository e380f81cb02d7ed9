"""A tiny name -> object registry: register where you define, look up by name, fail loudly on typos.

A registry may know names before their modules are imported (`lazy`: name -> module that registers it):
listing or checking names then costs nothing, and `get` imports the one module it needs. So `dfg --help`,
parameter validation and the workflow's planning never import torch to learn which methods exist.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from dfg import DfgError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, lazy: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = dict(lazy or {})

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"duplicate {self.kind} name {name!r}")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            importlib.import_module(self._lazy[name])
            if name not in self._items:
                raise RuntimeError(f"module {self._lazy[name]} does not register {self.kind} {name!r}")
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise DfgError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy
