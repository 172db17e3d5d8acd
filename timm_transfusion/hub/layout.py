"""Where each file of a run goes in a Hub repo (the documented layout) and staging it in a folder.

```
README.md                          model card
config.json, model.safetensors     exactly as timm.models.save_for_hf writes them
reports/summary.json               run summary (init, dataset, final metrics, steps_to_threshold, ...)
reports/metrics.jsonl              one evaluation per line (step, epoch, loss, auc, accuracy, ...)
reports/train_args.json            training arguments, when recorded
reports/convergence.png            evaluation AUC against steps, when the run has it
reports/filters.png                first-layer filters, when the run has it
reports/similarity/similarity.{json,csv,png,md}    layer-wise similarity report (`transfusion cca`)
reports/experiment/results.{md,csv}, *.png         experiment summary the run belongs to
```
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import TransfusionError
from .run import RunFolder

REPORTS = "reports"
SIMILARITY = f"{REPORTS}/similarity"
EXPERIMENT = f"{REPORTS}/experiment"

WEIGHTS = {"config.json": "timm config (`save_for_hf`)", "model.safetensors": "weights (`save_for_hf`)"}
RUN_REPORTS = {
    "summary.json": "run summary: init, dataset, final metrics, steps to each AUC threshold",
    "metrics.jsonl": "every evaluation during training, one JSON object per line",
    "train_args.json": "training arguments",
    "convergence.png": "evaluation AUC against training steps",
    "filters.png": "first-layer filters",
}
SIMILARITY_REPORT = {
    "similarity.json": "layer-wise similarity report",
    "similarity.csv": "layer-wise similarity table",
    "similarity.png": "layer-wise similarity plot",
    "similarity.md": "layer-wise similarity summary",
}
EXPERIMENT_REPORT = {
    "results.md": "experiment results table",
    "results.csv": "experiment results, one row per run",
    "convergence.png": "convergence of every init in the experiment",
    "filters.png": "first-layer filters of every init in the experiment",
}


class ReportFolderError(TransfusionError, ValueError):
    """A similarity or experiment folder passed in lacks the file that identifies it."""


def _require(folder: Path, marker: str, what: str, made_by: str) -> None:
    if not (folder / marker).is_file():
        raise ReportFolderError(
            f"{str(folder)!r} is not {'an' if what[0] in 'aeiou' else 'a'} {what} folder: no {marker} in it "
            f"({made_by} writes one)"
        )


def report_subject(report: dict) -> Path | None:
    """The folder a similarity report's model A was loaded from (its provenance, else its name), if any."""
    side = report.get("provenance", {}).get("a", {})
    if side:
        return Path(side["folder"]) if side.get("folder") and not side.get("random") else None
    name = str(report.get("model_a", "")).removeprefix("local-dir:")
    return Path(name).resolve() if name and Path(name).is_dir() else None


def check_report_subject(run: RunFolder, similarity: Path, *, force: bool) -> None:
    """Refuse a similarity report whose model A is not the run being published (``force`` overrides)."""
    try:
        report = json.loads((similarity / "similarity.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ReportFolderError(f"{str(similarity)!r}: similarity.json is unreadable ({err})") from err
    subject = report_subject(report)
    if force or (subject is not None and subject.resolve() == run.path.resolve()):
        return
    raise ReportFolderError(
        f"the similarity report in {str(similarity)!r} has model A {report.get('model_a')!r}, not the run "
        f"{str(run.path)!r}: run `transfusion cca {run.path} OTHER ...` with this run as A, "
        "or pass --force to publish it anyway"
    )


def collect_files(
    run: RunFolder,
    *,
    similarity: str | Path | None = None,
    experiment: str | Path | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Repo path -> local file for everything of ``run`` that goes to the Hub (README.md excluded).

    ``similarity`` defaults to ``run.path / "similarity"`` when that holds a report; its model A must be
    ``run`` unless ``force``.
    """
    files = {name: run.path / name for name in WEIGHTS}
    files.update({f"{REPORTS}/{name}": run.path / name for name in RUN_REPORTS if run.file(name)})
    if similarity is None and (run.path / "similarity" / "similarity.json").is_file():
        similarity = run.path / "similarity"
    if similarity is not None:
        similarity = Path(similarity)
        _require(similarity, "similarity.json", "similarity report", "`transfusion cca ... --out DIR`")
        check_report_subject(run, similarity, force=force)
        files.update(
            {f"{SIMILARITY}/{n}": similarity / n for n in SIMILARITY_REPORT if (similarity / n).is_file()}
        )
    if experiment is not None:
        experiment = Path(experiment)
        _require(experiment, "results.csv", "experiment", "`transfusion experiment`")
        files.update(
            {f"{EXPERIMENT}/{n}": experiment / n for n in EXPERIMENT_REPORT if (experiment / n).is_file()}
        )
    return files


def describe(repo_path: str) -> str:
    """One line on what the file at ``repo_path`` holds, for the card's file table."""
    name = repo_path.rsplit("/", 1)[-1]
    if repo_path == "README.md":
        return "this model card"
    for folder, table in (
        (SIMILARITY, SIMILARITY_REPORT),
        (EXPERIMENT, EXPERIMENT_REPORT),
        (REPORTS, RUN_REPORTS),
    ):
        if repo_path.startswith(folder + "/"):
            return table[name]
    return WEIGHTS[name]


def stage(files: dict[str, Path], folder: Path) -> None:
    """Copy ``files`` (repo path -> local file) into ``folder`` at their repo paths."""
    for repo_path, source in files.items():
        target = folder / repo_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
