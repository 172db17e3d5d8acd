"""Block groups of a timm model: every state-dict key (buffers too) → 0 = stem, 1… = blocks, last = head.

Groups come from the model's own `group_matcher(coarse=True)` through timm's `group_with_matcher`, so
transfusion-k works for every timm model that defines one. Where a model implements only the fine
grouping (rdnet asserts `not coarse`; its fine groups are its dense stages), the fine one is used.

A tensor shared by modules in different groups (coat's `cpe`/`crpe`, used by the stem's serial blocks and
later ones) belongs to the lowest group that uses it, so transfusion-k copies it whenever any of its
users is copied; a `TiedTensorWarning` says so once per grouping.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

from .._timm import group_with_matcher
from .errors import BlockIndexError, GroupMatcherError

Matcher = dict | Callable


class TiedTensorWarning(UserWarning):
    """A tensor is shared by block groups; it was assigned to the lowest of them."""


@dataclass(frozen=True)
class BlockGroups:
    """Group id of each state-dict key; `num_blocks` block groups sit between the stem and the head."""

    group_of: dict[str, int]
    num_blocks: int
    has_head: bool

    def keys_up_to(self, k: int) -> set[str]:
        """Keys of the stem and the first `k` block groups."""
        return {key for key, group in self.group_of.items() if group <= k}


def coarse_matcher(model: nn.Module) -> Matcher | None:
    """The model's coarse `group_matcher`, its fine one where coarse is not implemented, or None if it has none."""
    if not hasattr(model, "group_matcher"):
        return None
    try:
        return model.group_matcher(coarse=True)
    except (AssertionError, NotImplementedError):  # timm's way of saying "no coarse grouping" (rdnet)
        return model.group_matcher(coarse=False)


def block_groups(model: nn.Module) -> BlockGroups:
    """Map every state-dict key of `model` to its block group; a shared tensor goes to its lowest group."""
    matcher = coarse_matcher(model)
    if matcher is None:
        raise GroupMatcherError(
            f"{type(model).__name__} has no group_matcher(), so its block groups are unknown and "
            "transfusion-k cannot tell where block k ends; use 'random', 'pretrained' or 'meanvar'"
        )
    keys = list(model.state_dict())
    group_of = _lowest_group_of_shared(
        model, group_with_matcher(((key, None) for key in keys), matcher, reverse=True)
    )
    last = max(group_of.values())
    head_keys = classifier_keys(model, keys)
    has_head = bool(head_keys) and all(group_of[key] == last for key in head_keys)
    num_blocks = last - 1 if has_head else last
    return BlockGroups(group_of=group_of, num_blocks=num_blocks, has_head=has_head)


def tied_keys(model: nn.Module) -> list[list[str]]:
    """Lists of state-dict keys that name one and the same tensor (modules or parameters shared), in order."""
    by_tensor: dict[int, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        by_tensor.setdefault(id(tensor), []).append(key)
    return [keys for keys in by_tensor.values() if len(keys) > 1]


def _lowest_group_of_shared(model: nn.Module, group_of: dict[str, int]) -> dict[str, int]:
    moved = []
    for keys in tied_keys(model):
        lowest = min(group_of[key] for key in keys)
        moved += [key for key in keys if group_of[key] != lowest]
        group_of.update(dict.fromkeys(keys, lowest))
    if moved:
        warnings.warn(
            f"{type(model).__name__} shares {len(moved)} tensor name(s) across block groups (first: "
            f"{moved[0]!r}); each shared tensor belongs to the lowest group that uses it",
            TiedTensorWarning,
            stacklevel=3,
        )
    return group_of


def check_block_index(groups: BlockGroups, k: int, model_name: str) -> None:
    """Raise unless 0 ≤ k ≤ the model's number of block groups."""
    if not 0 <= k <= groups.num_blocks:
        raise BlockIndexError(
            f"transfusion-{k} is out of range for {model_name}: it has a stem and {groups.num_blocks} block "
            f"groups, so k must be in 0..{groups.num_blocks} (0 = stem only)"
        )


def classifier_keys(model: nn.Module, keys: Iterable[str]) -> set[str]:
    """The keys of the classifier named by the model's pretrained_cfg (e.g. 'fc', 'head.fc')."""
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    prefixes = tuple(
        p + "." for p in (classifier if isinstance(classifier, (list, tuple)) else [classifier]) if p
    )
    return {key for key in keys if prefixes and key.startswith(prefixes)}
