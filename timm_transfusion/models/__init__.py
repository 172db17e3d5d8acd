"""timm-registered architectures: the paper's CBR family and MobileNet-V1 ×0.25."""

from .cbr import CBR
from .mobilenetv1 import mobilenetv1_025

__all__ = ["CBR", "mobilenetv1_025"]
