"""timm-transfusion: the methods of Raghu et al. 2019 ("Transfusion") for every timm model.

Importing the package registers its models with timm and lets `timm.create_model` take `init=`.
"""

from . import models  # noqa: F401  (registers cbr_* and mobilenetv1_025 with timm)
from .init import apply_init, create_model, list_inits, patch_timm, register_init

patch_timm()

__version__ = "0.1.0"
__all__ = ["apply_init", "create_model", "list_inits", "register_init"]
