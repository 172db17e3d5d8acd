"""Weight scales per layer: the source's std against timm's random init, Mean Var and the other inits.

The paper credits part of transfer's speed-up to the scale of the pretrained weights ("feature-independent
benefits"), which Mean Var copies without any feature. Whether that can help a given model depends on how far
timm's own init already is from the source's scale: this table is the evidence.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .apply import apply_init
from .errors import ScaleError
from .groups import block_groups
from .registry import resolve_init
from .sampling import norm_keys
from .source import Source

SCALE_INITS = ("pretrained", "random", "meanvar", "rescaled")


@dataclass(frozen=True)
class TensorScale:
    """One weight tensor: its key, shape, block group (None when the model has no group_matcher) and the
    population std of its values under each init (init name -> std)."""

    key: str
    shape: tuple[int, ...]
    group: int | None
    std: dict[str, float]

    def ratio(self, init: str, reference: str = "pretrained") -> float | None:
        """std under ``init`` / std under ``reference``; None when the reference has no spread."""
        base = self.std[reference]
        return self.std[init] / base if base > 0 else None


def weight_scales(
    model: nn.Module,
    source: Source,
    *,
    inits: Sequence[str] = SCALE_INITS,
    seed: int = 0,
) -> list[TensorScale]:
    """The std of every weight tensor (parameters of 2 or more dims outside normalization layers) of
    ``model`` initialised by each of ``inits`` (with ``source`` for those that read one, ``seed`` for all).

    ``pretrained`` gives the source's own values (a classifier of another shape stays random). The model
    itself is left unchanged: each init is applied to a copy.
    """
    norms = norm_keys(model)
    keys = [name for name, p in model.named_parameters() if p.ndim >= 2 and name not in norms]
    stds: dict[str, dict[str, float]] = {key: {} for key in keys}
    for init in inits:
        needs_source = resolve_init(init)[0].needs_source
        initialised = apply_init(
            copy.deepcopy(model), init, source=source if needs_source else None, seed=seed
        )
        state = initialised.state_dict()
        for key in keys:
            stds[key][init] = scale_std(state[key])
    groups = _groups(model)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    return [TensorScale(key, shapes[key], groups.get(key), stds[key]) for key in keys]


def _groups(model: nn.Module) -> dict[str, int]:
    try:
        return block_groups(model).group_of
    except ValueError:
        return {}


def log_ratio_summary(scales: Sequence[TensorScale], init: str, reference: str = "pretrained") -> dict:
    """How far ``init``'s scale is from ``reference``'s over the tensors: the per-tensor log2 ratios
    (``log2_ratios``, for an interval over tensors), their mean and the geometric-mean ratio (over- and
    under-scaled tensors cancel in it), the typical factor ``2**mean|log2 ratio|`` (they do not), the range,
    and the fraction of tensors within a factor 1.25 of the reference."""
    ratios = [r for r in (s.ratio(init, reference) for s in scales) if r is not None and r > 0]
    if not ratios:
        raise ScaleError(f"no tensor has a positive {init!r}/{reference!r} std ratio")
    logs = [math.log2(r) for r in ratios]
    mean_log = sum(logs) / len(logs)
    mean_abs_log = sum(abs(v) for v in logs) / len(logs)
    return {
        "init": init,
        "reference": reference,
        "tensors": len(ratios),
        "log2_ratios": logs,
        "mean_log2_ratio": mean_log,
        "geometric_mean_ratio": 2.0**mean_log,
        "mean_abs_log2_ratio": mean_abs_log,
        "typical_factor": 2.0**mean_abs_log,
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "within_1_25": sum(0.8 <= r <= 1.25 for r in ratios) / len(ratios),
    }


def scale_table(scales: Sequence[TensorScale], reference: str = "pretrained") -> list[str]:
    """Markdown lines: one row per tensor, the std under each init and its ratio to ``reference``."""
    inits = list(scales[0].std) if scales else []
    others = [init for init in inits if init != reference]
    header = [
        "tensor",
        "shape",
        *(f"std {init}" for init in inits),
        *(f"{init}/{reference}" for init in others),
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for scale in scales:
        ratios = [scale.ratio(init, reference) for init in others]
        cells = [
            f"`{scale.key}`",
            "×".join(map(str, scale.shape)),
            *(f"{scale.std[init]:.4g}" for init in inits),
            *("n/a" if r is None else f"{r:.2f}" for r in ratios),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def scales_to_dict(scales: Sequence[TensorScale]) -> list[dict]:
    """JSON-ready rows (shape as a list)."""
    return [{**asdict(scale), "shape": list(scale.shape)} for scale in scales]


def scale_std(values: torch.Tensor) -> float:
    """The population std of a tensor's values, in float64."""
    return float(values.detach().double().std(correction=0))
