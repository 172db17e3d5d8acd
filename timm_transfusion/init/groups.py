"""Block groups of a timm model: every state-dict key (buffers too) → 0 = stem, 1… = blocks, last = head.

Groups come from the model's own `group_matcher(coarse=True)` through timm's `group_with_matcher`, so
transfusion-k works for every timm model that defines one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from .._timm import group_with_matcher
from .errors import BlockIndexError, GroupMatcherError


@dataclass(frozen=True)
class BlockGroups:
    """Group id of each state-dict key; `num_blocks` block groups sit between the stem and the head."""

    group_of: dict[str, int]
    num_blocks: int
    has_head: bool

    def keys_up_to(self, k: int) -> set[str]:
        """Keys of the stem and the first `k` block groups."""
        return {key for key, group in self.group_of.items() if group <= k}


def block_groups(model: nn.Module) -> BlockGroups:
    """Map every state-dict key of `model` to its block group."""
    if not hasattr(model, "group_matcher"):
        raise GroupMatcherError(
            f"{type(model).__name__} has no group_matcher(), so its block groups are unknown and "
            "transfusion-k cannot tell where block k ends; use 'random', 'pretrained' or 'meanvar'"
        )
    keys = list(model.state_dict())
    group_of = group_with_matcher(
        ((key, None) for key in keys), model.group_matcher(coarse=True), reverse=True
    )
    last = max(group_of.values())
    head_keys = classifier_keys(model, keys)
    has_head = bool(head_keys) and all(group_of[key] == last for key in head_keys)
    num_blocks = last - 1 if has_head else last
    return BlockGroups(group_of=group_of, num_blocks=num_blocks, has_head=has_head)


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
