"""Read the reports a push put in a Hub repo back as objects."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, hf_hub_download

from ..similarity import SimilarityReport
from . import layout
from .run import read_metrics


def _number(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclass(frozen=True)
class Convergence:
    """How fast the run learned: steps to each AUC threshold and every evaluation on the way."""

    steps_to_threshold: dict[float, int | None]
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    def curve(self, metric: str = "auc") -> tuple[list[int], list[float]]:
        """``(steps, values)`` of ``metric`` over the evaluations that recorded it."""
        points = [(e["step"], e[metric]) for e in self.evaluations if e.get(metric) is not None]
        return [s for s, _ in points], [v for _, v in points]


@dataclass(frozen=True)
class ExperimentReport:
    """The experiment the run belongs to: ``results.csv`` rows and the ``results.md`` table."""

    rows: list[dict[str, Any]]
    markdown: str | None


@dataclass(frozen=True)
class HubReport:
    """Everything a push stored about a run, read at one commit of the repo."""

    repo_id: str
    commit: str
    files: tuple[str, ...]
    summary: dict[str, Any]
    final: dict[str, Any]
    convergence: Convergence | None
    train_args: dict[str, Any]
    similarity: SimilarityReport | None  # timm_transfusion.similarity.SimilarityReport
    experiment: ExperimentReport | None


def load_report(repo_id: str, *, revision: str | None = None, token: str | bool | None = None) -> HubReport:
    """Download the reports of ``repo_id`` (at ``revision``, default main) and parse them.

    Parts the push did not include are ``None`` (or empty). Files are fetched at the commit ``revision``
    resolves to, so every part describes the same push.
    """
    api = HfApi(token=token)
    info = api.model_info(repo_id, revision=revision)
    files = tuple(sorted(s.rfilename for s in info.siblings or []))

    def fetch(path: str) -> Path | None:
        if path not in files:
            return None
        return Path(hf_hub_download(repo_id, path, revision=info.sha, token=token, endpoint=api.endpoint))

    def fetch_json(path: str) -> dict[str, Any]:
        local = fetch(path)
        return json.loads(local.read_text(encoding="utf-8")) if local else {}

    summary = fetch_json(f"{layout.REPORTS}/summary.json")
    metrics_path = fetch(f"{layout.REPORTS}/metrics.jsonl")
    evaluations = read_metrics(metrics_path) if metrics_path else []
    convergence = None
    if "steps_to_threshold" in summary or evaluations:
        thresholds = {float(t): s for t, s in summary.get("steps_to_threshold", {}).items()}
        convergence = Convergence(steps_to_threshold=thresholds, evaluations=evaluations)

    similarity = None
    if f"{layout.SIMILARITY}/similarity.json" in files:
        similarity = SimilarityReport.from_dict(fetch_json(f"{layout.SIMILARITY}/similarity.json"))
    experiment = None
    if f"{layout.EXPERIMENT}/results.csv" in files:
        markdown = fetch(f"{layout.EXPERIMENT}/results.md")
        experiment = ExperimentReport(
            rows=_read_csv(fetch(f"{layout.EXPERIMENT}/results.csv")),
            markdown=markdown.read_text(encoding="utf-8") if markdown else None,
        )
    return HubReport(
        repo_id=repo_id,
        commit=info.sha,
        files=files,
        summary=summary,
        final=summary.get("final", {}),
        convergence=convergence,
        train_args=fetch_json(f"{layout.REPORTS}/train_args.json"),
        similarity=similarity,
        experiment=experiment,
    )
