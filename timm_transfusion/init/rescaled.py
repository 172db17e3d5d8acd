"""`rescaled`: timm's random init with each weight tensor's spread set to the source tensor's std.

It separates the two things Mean Var changes at once. Against `random` with the same seed, it differs only in
scale (the same random draws, one factor per tensor); against `meanvar`, only in the distribution the values
are drawn from. If `rescaled` converges like `meanvar`, the benefit of Mean Var is the scale of the pretrained
weights, not anything else about them (the paper's "feature-independent benefits").
"""

from __future__ import annotations

import torch

from .context import InitContext
from .errors import SourceMismatchError
from .groups import classifier_keys
from .registry import register_init
from .sampling import STATS_MODES, check_choice, norm_keys

State = dict[str, torch.Tensor]


@register_init(
    "rescaled",
    description="timm's random init (same seed as random), each weight tensor rescaled to the source's std",
)
def rescaled_init(ctx: InitContext, *, stats: str = "tensor", mean: bool = False) -> State:
    """Every floating-point parameter outside the normalization layers, except a classifier of another shape
    and tensors without spread (zero biases), becomes ``mean + (random − mean)·σ_source/σ_random``.

    ``mean=True`` also moves each tensor's mean to the source's, so the first two moments equal Mean Var's
    and only the distribution's shape (timm's draw vs a normal) differs.
    """
    check_choice("stats", stats, STATS_MODES)
    random, source = ctx.random_state, ctx.source_state
    norms, head = norm_keys(ctx.model), classifier_keys(ctx.model, random)
    params = {name for name, _ in ctx.model.named_parameters()}
    result = {}
    for key in sorted(params - norms):
        if not random[key].is_floating_point() or key not in source:
            continue
        if source[key].shape != random[key].shape:
            if key in head:
                continue
            raise SourceMismatchError(
                f"the init source does not match {ctx.model_name}: {key!r} is {tuple(random[key].shape)} in "
                f"the model but {tuple(source[key].shape)} in the source"
            )
        result[key] = rescale_to(random[key], source[key], stats=stats, mean=mean)
    return result


def rescale_to(
    values: torch.Tensor, reference: torch.Tensor, *, stats: str = "tensor", mean: bool = False
) -> torch.Tensor:
    """``values`` with its spread around its own mean scaled to ``reference``'s population std (and, with
    ``mean=True``, centred on ``reference``'s mean).

    ``stats="channel"`` matches each output channel (dim 0) of tensors with 2 or more dims. Parts without
    spread (constant values) are not scaled: there is nothing to scale.
    """
    check_choice("stats", stats, STATS_MODES)
    rows = stats == "channel" and values.ndim >= 2
    shape = (values.shape[0], -1) if rows else (1, -1)
    flat, target = values.detach().double().reshape(shape), reference.detach().double().reshape(shape)
    own_mean = flat.mean(dim=1, keepdim=True)
    centre = target.mean(dim=1, keepdim=True) if mean else own_mean
    spread, wanted = (
        flat.std(dim=1, correction=0, keepdim=True),
        target.std(dim=1, correction=0, keepdim=True),
    )
    factor = torch.where(spread > 0, wanted / spread.clamp_min(torch.finfo(torch.float64).tiny), 1.0)
    return (centre + (flat - own_mean) * factor).reshape(values.shape).to(values.dtype)
