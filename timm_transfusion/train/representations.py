"""How much fine-tuning moved each layer, per init: the model at its init against the fine-tuned model.

The paper's layer-wise CCA finding: from pretrained weights the lower layers barely change (similarity near
1 after fine-tuning) while the top ones do; from a random init every layer changes a lot. Each report
compares one init's starting model (rebuilt from its seed) with its trained weights on the eval images.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from ..files import write_text_atomic
from ..similarity import SimilarityReport, compare
from ..similarity.compare import Preprocess
from ..similarity.sources import image_batches

CHANGE_METRICS = ("pwcca", "linear_cka")
EVAL_IMAGES = 512


def representation_change(
    before: nn.Module, after: nn.Module, images: DataLoader, preprocess: Preprocess, init: str
) -> SimilarityReport:
    """PWCCA and linear CKA of every block group of ``before`` (the init) and ``after`` (fine-tuned)."""
    names = (f"{init} at init", f"{init} fine-tuned")
    return compare(before, after, images, metrics=CHANGE_METRICS, preprocess=preprocess, names=names)


def eval_images(
    dataset: str, model: nn.Module, *, split: str, img_size: int
) -> tuple[DataLoader, Preprocess]:
    """Up to ``EVAL_IMAGES`` uint8 images of the eval split and the model's normalisation for them."""
    return image_batches(dataset, model, split=split, img_size=img_size, limit=EVAL_IMAGES)


def write_representation_change(
    folder: Path,
    reports: dict[str, SimilarityReport],
    metric: str = "pwcca",
    *,
    name: str = "representations",
) -> dict[str, Path]:
    """``NAME.json`` (every report), ``NAME.csv`` (layer × init) and ``NAME.png``."""
    from ..viz.similarity import plot_representation_change

    paths = {kind: folder / f"{name}.{kind}" for kind in ("json", "csv", "png")}
    payload = {init: report.to_dict() for init, report in reports.items()}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["layer", "datapoints", *(f"{init}_{m}" for init in reports for m in CHANGE_METRICS)])
    for row in zip(*(report.layers for report in reports.values()), strict=True):
        values = [entry.values[m] for entry in row for m in CHANGE_METRICS]
        writer.writerow([row[0].name, row[0].datapoints, *("" if v is None else repr(v) for v in values)])
    write_text_atomic(paths["csv"], buffer.getvalue())
    plot_representation_change(reports, paths["png"], metric=metric)
    return paths


def change_table(reports: dict[str, SimilarityReport], metric: str = "pwcca") -> list[str]:
    """Markdown lines: one row per layer, one column per init, the init-vs-fine-tuned ``metric``."""
    inits = list(reports)
    lines = [
        "| layer | " + " | ".join(inits) + " |",
        "|---|" + "---:|" * len(inits),
    ]
    for row in zip(*(report.layers for report in reports.values()), strict=True):
        cells = ["n/a" if entry.values[metric] is None else f"{entry.values[metric]:.3f}" for entry in row]
        lines.append(f"| {row[0].name} | " + " | ".join(cells) + " |")
    return lines
