"""The body of ``transfusion cca`` as a library function: build both models and the images, compare, save.

A notebook calls ``compare_sources("runs/a", "runs/b", dataset="npz:data.npz", out="report/")`` and gets the
same report the command writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import TransfusionError
from .compare import compare
from .report import SimilarityReport
from .sources import default_img_size, image_batches, load_model, normalization


class OutputPathError(TransfusionError, NotADirectoryError):
    """The report folder exists and is not a folder."""


def compare_sources(
    source_a: str,
    source_b: str,
    *,
    dataset: str,
    out: str | Path | None = None,
    split: str = "test",
    limit: int | None = None,
    img_size: int | None = None,
    batch_size: int = 64,
    workers: int = 0,
    metrics: Sequence[str] = ("pwcca", "svcca", "linear_cka"),
    layers: Sequence[str | tuple[str, str]] | None = None,
    max_positions: int = 64,
    epsilon: float = 0.0,
    pretrained: bool = True,
    random_b: bool = False,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> SimilarityReport:
    """Layer-wise similarity of two models (run folders, ``local-dir:``, ``hf-hub:`` or timm names) on images.

    ``pretrained=False`` gives both models timm's seeded random weights, ``random_b`` only model B. With
    ``out`` the report is saved there (similarity.{json,csv,md,png}); a failure leaves no empty folder.
    """

    out = Path(out) if out is not None else None
    created = out is not None and not out.exists()
    if out is not None:  # made now, so a bad path is found before any model is loaded
        if out.exists() and not out.is_dir():
            raise OutputPathError(f"--out {out} exists and is not a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputPathError(f"cannot create --out {out}: {error}") from error
    try:
        report = _compare(
            source_a,
            source_b,
            dataset,
            pretrained=pretrained,
            random_b=random_b,
            seed=seed,
            device=device,
            img_size=img_size,
            loader_options=dict(split=split, batch_size=batch_size, limit=limit, workers=workers),
            compare_options=dict(
                metrics=metrics,
                layers=layers,
                max_positions=max_positions,
                epsilon=epsilon,
                progress=progress,
            ),
        )
        if out is not None:
            report.save(out)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed comparison leaves no empty report folder behind
    return report


def _compare(
    source_a: str,
    source_b: str,
    dataset: str,
    *,
    pretrained: bool,
    random_b: bool,
    seed: int,
    device: str | None,
    img_size: int | None,
    loader_options: dict,
    compare_options: dict,
) -> SimilarityReport:
    """Both models on one device, checked against the image size, then ``compare`` over the dataset."""
    from ..train.model import check_image_size

    model_a = load_model(source_a, pretrained=pretrained, seed=seed)
    model_b = load_model(source_b, pretrained=pretrained and not random_b, seed=seed + 1)
    size = img_size or default_img_size(model_a)
    for model in (model_a, model_b):  # a fixed-size model (e.g. ViT) refuses other sizes: say so up front
        check_image_size(model, size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_a, model_b = model_a.to(device), model_b.to(device)
    loader, preprocess = image_batches(dataset, model_a, img_size=size, **loader_options)
    return compare(
        model_a,
        model_b,
        loader,
        seed=seed,
        preprocess=preprocess,
        preprocess_b=normalization(model_b, size),
        names=(source_a, source_b),
        **compare_options,
    )
