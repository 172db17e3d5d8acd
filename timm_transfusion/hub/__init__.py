"""Publish runs to the Hugging Face Hub and read them back.

    push_to_hub(run_dir_or_model, "user/repo")     # weights + model card + reports, one commit
    write_card(run_dir)                            # preview: run_dir/README.md
    load_report("user/repo")                       # summary, convergence, similarity as objects
    timm.create_model("hf-hub:user/repo", pretrained=True)   # stock timm loads the weights

The repo layout is documented in :mod:`timm_transfusion.hub.layout`.
"""

from .card import render_card, write_card
from .layout import ReportFolderError
from .push import MissingTokenError, NothingToPushError, PushError, PushResult, push_to_hub
from .report import Convergence, ExperimentReport, HubReport, load_report
from .run import RunFolder, RunFolderError, load_run_folder

__all__ = [
    "Convergence",
    "ExperimentReport",
    "HubReport",
    "MissingTokenError",
    "NothingToPushError",
    "PushError",
    "PushResult",
    "ReportFolderError",
    "RunFolder",
    "RunFolderError",
    "load_report",
    "load_run_folder",
    "push_to_hub",
    "render_card",
    "write_card",
]
