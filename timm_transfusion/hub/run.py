"""A run folder as the card and the push read it: see :mod:`timm_transfusion.run_folder` (the schema)."""

from ..run_folder import WEIGHT_FILES, RunFolder, RunFolderError, load_run_folder, read_metrics

__all__ = ["WEIGHT_FILES", "RunFolder", "RunFolderError", "load_run_folder", "read_metrics"]
