"""timm-registered architectures: the paper's CBR family, MobileNet-V1 ×0.25 and slim hybrids."""

from .cbr import CBR
from .mobilenetv1 import mobilenetv1_025
from .slim import SLIM_VARIANTS, SlimError, SlimSpec, slim, slim_spec_of

__all__ = ["CBR", "SLIM_VARIANTS", "SlimError", "SlimSpec", "mobilenetv1_025", "slim", "slim_spec_of"]
