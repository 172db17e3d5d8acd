"""The built-in initializers: random, pretrained, meanvar, transfusion-k and transfusion-k+meanvar.

Each returns the tensors it sets; every other tensor of the model takes the value timm's own
initialization gives with the same seed (`ctx.random_state`), filled in by `run_init`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..models.slim import slim_spec_of
from .context import InitContext
from .errors import BlockIndexError, InitOptionError, SourceMismatchError
from .groups import block_groups, check_block_index, classifier_keys
from .norms import norm_identities
from .registry import register_init
from .sampling import BN_MODES, STATS_MODES, check_choice, identity_norm, sample_meanvar

State = dict[str, torch.Tensor]
_OPTIONAL_KEYS = ("num_batches_tracked",)


@register_init(
    "random", description="timm's own random initialization, seeded by init_seed", needs_source=False
)
def random_init(ctx: InitContext) -> State:
    return {}


@register_init(
    "pretrained", description="full transfer: copy every source tensor; a head of another shape stays random"
)
def pretrained_init(ctx: InitContext) -> State:
    return _source_tensors(ctx, ctx.target_state)


@register_init(
    "meanvar",
    description="Mean Var: weights i.i.d. N(mean, var) of the matching source tensor; norm layers identity",
)
def meanvar_init(ctx: InitContext, *, bn: str = "identity", stats: str = "tensor") -> State:
    return _meanvar_tensors(ctx, frozen=set(), bn=bn, stats=stats)


@register_init(
    "transfusion-{k}",
    description="copy the stem and the first k block groups from the source; the rest as random",
)
def transfusion_init(ctx: InitContext, *, k: int) -> State:
    return _source_tensors(ctx, _lower_keys(ctx, k))


@register_init(
    "transfusion-{k}+meanvar",
    description="copy the stem and the first k block groups; the layers above are Mean Var",
)
def transfusion_meanvar_init(
    ctx: InitContext, *, k: int, bn: str = "identity", stats: str = "tensor"
) -> State:
    lower = _lower_keys(ctx, k)
    return {**_source_tensors(ctx, lower), **_meanvar_tensors(ctx, frozen=lower, bn=bn, stats=stats)}


def _lower_keys(ctx: InitContext, k: int) -> set[str]:
    groups = block_groups(ctx.model)
    check_block_index(groups, k, ctx.model_name)
    spec = slim_spec_of(ctx.model)
    if spec is not None and k > spec.reuse:
        raise BlockIndexError(
            f"transfusion-{k} is out of range for the slim {ctx.model_name}: only its stem and first "
            f"{spec.reuse} block groups have {spec.base}'s shapes, so k must be in 0..{spec.reuse}"
        )
    return groups.keys_up_to(k)


def _meanvar_tensors(ctx: InitContext, *, frozen: set[str], bn: str, stats: str) -> State:
    """Mean Var samples for every parameter outside `frozen`; normalization layers follow `bn`."""
    check_choice("bn", bn, BN_MODES)
    check_choice("stats", stats, STATS_MODES)
    slim = slim_spec_of(ctx.model) is not None
    if slim and (stats != "tensor" or bn == "transfer"):
        raise InitOptionError(
            f"stats={stats!r}, bn={bn!r}: the slim {ctx.model_name}'s upper groups are thinner than the "
            "source's, so only shape-free statistics apply there: use stats='tensor' with bn='identity' or 'meanvar'"
        )
    target = ctx.target_state
    identities = {key: value for key, value in norm_identities(ctx.model).items() if key not in frozen}
    params = {name for name, _ in ctx.model.named_parameters(remove_duplicate=False)}
    sampled = [k for k in target if k in params and k not in identities and k not in frozen]
    if bn == "identity":
        result = {key: identity_norm(value, target[key]) for key, value in identities.items()}
    elif bn == "transfer":
        result = _source_tensors(ctx, identities)
    else:
        result = {
            key: identity_norm(value, target[key]) for key, value in identities.items() if key not in params
        }
        sampled += [key for key in identities if key in params]
    source = _source_tensors(ctx, sampled, any_shape=slim)
    for key in sampled:
        if key in source and target[key].is_floating_point():
            result[key] = sample_meanvar(source[key], target[key], stats=stats, generator=ctx.generator)
    return result


def _source_tensors(ctx: InitContext, keys: Iterable[str], *, any_shape: bool = False) -> State:
    """Source tensors for `keys`; only a classifier of another shape, or optional counters, may be absent.

    `any_shape` (Mean Var statistics of a slim model's full-width source) also takes tensors of another
    shape and lets keys the source lacks (a shortcut only the slim model has) stay random.
    """
    source, target = ctx.source_state, ctx.target_state
    head = classifier_keys(ctx.model, target)
    found: State = {}
    problems: list[str] = []
    for key in keys:
        tensor = source.get(key)
        if tensor is not None and tensor.shape == target[key].shape:
            found[key] = tensor
        elif key in head or key.endswith(_OPTIONAL_KEYS):
            continue
        elif any_shape:
            if tensor is not None:
                found[key] = tensor
        elif tensor is None:
            problems.append(f"{key!r} missing from the source")
        else:
            problems.append(
                f"{key!r} is {tuple(target[key].shape)} in the model but {tuple(tensor.shape)} in the source"
            )
    if problems:
        raise SourceMismatchError(
            f"the init source does not match {ctx.model_name}: "
            f"{len(problems)} tensor(s) differ, first: {'; '.join(problems[:5])}. Is the source the same architecture?"
        )
    return found
