"""The initializer registry: names (and name families such as `transfusion-{k}`) → functions.

An initializer is a function `fn(ctx: InitContext, **params, **options) -> dict[str, Tensor]` that
returns the model's complete new state dict. Families put integer parameters in braces, so
`register_init("transfusion-{k}")` answers to `transfusion-0`, `transfusion-1`, ….
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .errors import InitError, InitOptionError, UnknownInitError

InitFn = Callable[..., dict[str, torch.Tensor]]


@dataclass(frozen=True)
class InitEntry:
    """A registered initializer: its name pattern, function and one-line description."""

    pattern: str
    fn: InitFn
    description: str
    needs_source: bool
    regex: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        escaped = re.escape(self.pattern).replace(r"\{", "{").replace(r"\}", "}")
        regex = re.compile("^" + re.sub(r"{(\w+)}", r"(?P<\1>\\d+)", escaped) + "$")
        object.__setattr__(self, "regex", regex)

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.pattern))

    @property
    def options(self) -> dict[str, object]:
        """Keyword options the function accepts beyond the name parameters, with their defaults."""
        signature = inspect.signature(self.fn)
        return {
            name: p.default
            for name, p in signature.parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in self.params
        }


_REGISTRY: dict[str, InitEntry] = {}


def register_init(
    pattern: str, *, description: str, needs_source: bool = True, replace: bool = False
) -> Callable[[InitFn], InitFn]:
    """Decorator that registers an initializer under `pattern` (e.g. `"meanvar"`, `"transfusion-{k}"`).

    `needs_source=False` marks initializers that read no pretrained weights (they refuse a source);
    registering a taken pattern raises unless `replace=True`.
    """
    if pattern in _REGISTRY and not replace:
        raise InitError(f"an initializer {pattern!r} is already registered; pass replace=True to override it")

    def decorator(fn: InitFn) -> InitFn:
        _REGISTRY[pattern] = InitEntry(pattern, fn, description, needs_source)
        return fn

    return decorator


def list_inits() -> dict[str, str]:
    """Registered initializer names (families with their `{k}` placeholder) and their descriptions."""
    return {pattern: entry.description for pattern, entry in _REGISTRY.items()}


def resolve_init(name: str) -> tuple[InitEntry, dict[str, int]]:
    """Find the entry answering to `name` and the integer parameters parsed from it."""
    for entry in _REGISTRY.values():
        match = entry.regex.match(name)
        if match:
            return entry, {key: int(value) for key, value in match.groupdict().items()}
    raise UnknownInitError(f"unknown init {name!r}; valid inits: {', '.join(_REGISTRY)} (k = 0, 1, 2, …)")


def check_options(entry: InitEntry, options: dict[str, object], *, source: object = None) -> None:
    """Raise if `options` names anything the initializer does not accept, or it is given an unused source."""
    if source is not None and not entry.needs_source:
        raise InitOptionError(f"init {entry.pattern!r} reads no pretrained weights; drop the init source")
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        valid = ", ".join(entry.options) or "none"
        raise InitOptionError(f"init {entry.pattern!r} has no option {unknown[0]!r}; valid options: {valid}")
