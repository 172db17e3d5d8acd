"""Normalization layers as data: which module classes normalize, and each tensor's identity value.

Mean Var (Raghu et al. 2019) sets normalization layers to their identity instead of sampling them. What
"identity" means depends on the layer, so it is written down per class, not guessed from a name:

- batch / layer / group / RMS / simple norms, EvoNorm and Filter Response Norm: the affine transform after
  the normalization is the identity (weight 1, bias 0), running statistics are those of unit data (mean 0,
  variance 1), and EvoNorm's `v` (1) and FRN's TLU threshold `tau` (0) take the values timm resets them to;
- GlobalResponseNorm (ConvNeXt-V2) computes x + bias + weight·(x·N(x)): it is the identity only with
  weight = bias = 0, which is also timm's own init.

Classes are looked up along the module's MRO, so subclasses (timm's LayerNorm2d, BatchNormAct2d,
metaformer's LayerNormNoBias, …) share their base's entry. A tensor of a norm layer that its entry does
not name (a subclass's extra parameter) is treated like any other tensor. Containers that merely hold a
norm (ConvNormAct, NormMlpClassifierHead, GlobalResponseNormMlp, …) are not norms: their norm child is.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from timm.layers import evo_norm, filter_response_norm, grn, inplace_abn, norm, norm_act
from torch import nn

Identity = Mapping[str, float]

_AFFINE: Identity = MappingProxyType({"weight": 1.0, "bias": 0.0})
_SCALE: Identity = MappingProxyType({"weight": 1.0})
_FROZEN_BATCH: Identity = MappingProxyType({**_AFFINE, "running_mean": 0.0, "running_var": 1.0})
_BATCH: Identity = MappingProxyType({**_FROZEN_BATCH, "num_batches_tracked": 0})
_EVO_BATCH: Identity = MappingProxyType({**_AFFINE, "running_var": 1.0})

NORM_IDENTITIES: Mapping[type[nn.Module], Identity] = MappingProxyType(
    {
        # torch: BatchNorm*, SyncBatchNorm, InstanceNorm* (and timm's BatchNormAct2d, SplitBatchNorm2d, …)
        nn.modules.batchnorm._NormBase: _BATCH,
        nn.LayerNorm: _AFFINE,
        nn.GroupNorm: _AFFINE,
        nn.RMSNorm: _SCALE,
        norm_act.FrozenBatchNorm2d: _FROZEN_BATCH,  # torchvision's, or timm's own without torchvision
        norm_act.FrozenBatchNormAct2d: _FROZEN_BATCH,
        inplace_abn.InplaceAbn: _FROZEN_BATCH,
        norm.RmsNorm: _SCALE,
        norm.RmsNormFp32: _SCALE,
        norm.RmsNorm2d: _SCALE,
        norm.RmsNorm2dFp32: _SCALE,
        norm.SimpleNorm: _SCALE,
        norm.SimpleNormFp32: _SCALE,
        norm.SimpleNorm2d: _SCALE,
        norm.SimpleNorm2dFp32: _SCALE,
        evo_norm.EvoNorm2dB0: MappingProxyType({**_EVO_BATCH, "v": 1.0}),
        evo_norm.EvoNorm2dB1: _EVO_BATCH,
        evo_norm.EvoNorm2dB2: _EVO_BATCH,
        evo_norm.EvoNorm2dS0: MappingProxyType({**_AFFINE, "v": 1.0}),
        evo_norm.EvoNorm2dS1: _AFFINE,
        evo_norm.EvoNorm2dS2: _AFFINE,
        filter_response_norm.FilterResponseNormTlu2d: MappingProxyType({**_AFFINE, "tau": 0.0}),
        filter_response_norm.FilterResponseNormAct2d: _AFFINE,
        grn.GlobalResponseNorm: MappingProxyType({"weight": 0.0, "bias": 0.0}),
    }
)


def norm_identity(module: nn.Module) -> Identity | None:
    """The identity values of `module`'s own tensors if its class (or a base class) normalizes, else None."""
    for cls in type(module).__mro__:
        identity = NORM_IDENTITIES.get(cls)
        if identity is not None:
            return identity
    return None


def norm_identities(model: nn.Module) -> dict[str, float]:
    """{state-dict key: identity value} for every tensor owned directly by a normalization layer of `model`."""
    identities: dict[str, float] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        identity = norm_identity(module)
        if identity is None:
            continue
        prefix = f"{name}." if name else ""
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        identities.update({prefix + key: identity[key] for key, _ in own if key in identity})
    return identities
