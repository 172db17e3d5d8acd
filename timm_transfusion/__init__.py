"""timm-transfusion: the methods of Raghu et al. 2019 ("Transfusion") for every timm model.

Importing the package registers its models with timm and lets `timm.create_model` take `init=` (through timm's
model-entrypoint table, see :mod:`timm_transfusion.init.extension`); `disable_timm_init()` or
`TIMM_TRANSFUSION_TIMM_INIT=0` switches that off, and `timm_transfusion.create_model` works either way.
"""

from . import models  # noqa: F401  (registers cbr_* and mobilenetv1_025 with timm)
from .errors import TransfusionError
from .init import (
    apply_init,
    create_model,
    disable_timm_init,
    enable_timm_init,
    list_inits,
    register_init,
    timm_init_enabled,
)
from .init.extension import enable_unless_switched_off

enable_unless_switched_off()

__version__ = "0.1.0"
__all__ = [
    "TransfusionError",
    "apply_init",
    "create_model",
    "disable_timm_init",
    "enable_timm_init",
    "list_inits",
    "register_init",
    "timm_init_enabled",
]
