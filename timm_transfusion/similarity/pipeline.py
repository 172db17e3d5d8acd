"""The body of ``transfusion cca`` as a library function: build both models and the images, compare, save.

A notebook calls ``compare_sources("runs/a", "runs/b", dataset="npz:data.npz", out="report/")`` and gets the
same report the command writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import TransfusionError
from ..files import TMP_PREFIX
from ..models.checks import check_image_size
from ..source_kind import local_path, source_kind
from .compare import compare
from .report import REPORT_FILES, SimilarityReport
from .sources import default_img_size, image_batches, load_model, normalization

REPORT_NAMES = frozenset(f"similarity.{kind}" for kind in REPORT_FILES)


class OutputPathError(TransfusionError, NotADirectoryError):
    """The report folder is a file, or a folder holding something other than a similarity report."""


def check_report_folder(out: Path) -> None:
    """``out`` is new, empty, or holds an earlier similarity report (which the new one replaces).

    ``train`` refuses folders that hold something else; so does ``cca``: it never writes among foreign files.
    """
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder")
            break
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputPathError(f"--out {str(out)!r} exists and is not a folder")
    others = sorted(
        p.name for p in out.iterdir() if p.name not in REPORT_NAMES and not p.name.startswith(TMP_PREFIX)
    )
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise OutputPathError(
            f"--out {str(out)!r} is not empty and holds no similarity report ({shown}); refusing to write "
            "into it: choose a new or empty folder"
        )


def side_provenance(source: str, *, random: bool, seed: int) -> dict:
    """What one side of a comparison was: the source as given, its folder, random or not and the seed."""
    folder = str(local_path(source).resolve()) if source_kind(source) in ("local-dir", "folder") else None
    return {"source": source, "folder": folder, "random": random, "seed": seed if random else None}


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
    ``out`` (new, empty or an earlier report) the report is saved there (similarity.{json,csv,md,png}); a
    failure writes nothing. The report's ``provenance`` records what was compared (see ``side_provenance``),
    and a random side is named ``SOURCE [random init, seed N]``.
    """

    out = Path(out) if out is not None else None
    if out is not None:  # checked now, so a bad folder is found before any model is loaded
        check_report_folder(out)
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
    model_a = load_model(source_a, pretrained=pretrained, seed=seed)
    model_b = load_model(source_b, pretrained=pretrained and not random_b, seed=seed + 1)
    size = img_size or default_img_size(model_a)
    for model in (model_a, model_b):  # a fixed-size model (e.g. ViT) refuses other sizes: say so up front
        check_image_size(model, size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_a, model_b = model_a.to(device), model_b.to(device)
    loader, preprocess = image_batches(dataset, model_a, img_size=size, **loader_options)
    sides = {
        "a": side_provenance(source_a, random=not pretrained, seed=seed),
        "b": side_provenance(source_b, random=not pretrained or random_b, seed=seed + 1),
    }
    names = tuple(  # a random side says so wherever the report is shown (a card once read "runs/x vs runs/x")
        side["source"] + (f" [random init, seed {side['seed']}]" if side["random"] else "")
        for side in sides.values()
    )
    report = compare(
        model_a,
        model_b,
        loader,
        seed=seed,
        preprocess=preprocess,
        preprocess_b=normalization(model_b, size),
        names=names,
        **compare_options,
    )
    data = {
        "dataset": dataset,
        "split": loader_options["split"],
        "limit": loader_options["limit"],
        "img_size": size,
        "max_positions": compare_options["max_positions"],
        "position_seed": seed,
    }
    return dataclasses.replace(report, provenance={**sides, "data": data})
