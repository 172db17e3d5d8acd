"""SimilarityReport: layers × metrics, written as JSON, CSV, Markdown and a PNG."""

from __future__ import annotations

import csv
import io
import json
import math
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import atomic_path, write_text_atomic
from .errors import ReportKeyError, ReportPathError

REPORT_FILES = ("json", "csv", "md", "png")
NULL_MEANING = "what unrelated representations score at the same datapoints and features"


@dataclass(frozen=True)
class LayerSimilarity:
    """One compared layer pair: its sizes, the datapoints seen, and metric -> value (None if undefined).

    ``null`` holds each metric on the same activations unpaired (see ``similarity.null``); empty when the
    report was computed without a null baseline. ``replicates`` holds each metric of every resample of the
    images when ``compare`` was given ``replicate_weights`` (None where a resample left it undefined).
    """

    layer_a: str
    layer_b: str
    features_a: int
    features_b: int
    datapoints: int
    values: dict[str, float | None]
    note: str | None = None
    null: dict[str, float | None] = field(default_factory=dict)
    replicates: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.layer_a if self.layer_a == self.layer_b else f"{self.layer_a}|{self.layer_b}"


@dataclass(frozen=True)
class SimilarityReport:
    """Layer-wise similarity of model A and model B on the same images.

    ``provenance`` records exactly what was compared (see ``describe_side``): per side the source as given, the
    resolved folder, whether its weights were random and under which seed; the dataset, split, image size.
    """

    model_a: str
    model_b: str
    metrics: tuple[str, ...]
    layers: list[LayerSimilarity]
    images: int
    settings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def value(self, layer: str, metric: str) -> float | None:
        for entry in self.layers:
            if entry.name == layer:
                return entry.values[metric]
        raise ReportKeyError(
            f"no layer {layer!r} in the report; layers: {[entry.name for entry in self.layers]}"
        )

    def column(self, metric: str) -> list[float | None]:
        if metric not in self.metrics:
            raise ReportKeyError(f"no metric {metric!r} in the report; metrics: {list(self.metrics)}")
        return [entry.values[metric] for entry in self.layers]

    def null_column(self, metric: str) -> list[float | None]:
        """The null baseline of ``metric`` per layer (None where it was not computed)."""
        self.column(metric)
        return [entry.null.get(metric) for entry in self.layers]

    @property
    def has_null(self) -> bool:
        return any(entry.null for entry in self.layers)

    def to_dict(self) -> dict:
        return {**asdict(self), "metrics": list(self.metrics)}

    @classmethod
    def from_dict(cls, data: dict) -> SimilarityReport:
        layers = [LayerSimilarity(**entry) for entry in data["layers"]]
        return cls(
            data["model_a"],
            data["model_b"],
            tuple(data["metrics"]),
            layers,
            data["images"],
            data.get("settings", {}),
            data.get("provenance", {}),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            write_text_atomic(path, text)
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        null_names = [f"{m}_null" for m in self.metrics] if self.has_null else []
        writer.writerow(
            ["layer_a", "layer_b", "features_a", "features_b", "datapoints", *self.metrics, *null_names]
        )
        for entry in self.layers:
            values = ["" if entry.values[m] is None else repr(entry.values[m]) for m in self.metrics]
            if null_names:
                values += ["" if entry.null.get(m) is None else repr(entry.null[m]) for m in self.metrics]
            writer.writerow(
                [entry.layer_a, entry.layer_b, entry.features_a, entry.features_b, entry.datapoints, *values]
            )
        if path is not None:
            write_text_atomic(path, buffer.getvalue())
        return buffer.getvalue()

    def to_markdown(self, path: str | Path | None = None) -> str:
        columns = list(self.metrics) + ([f"{m} (null)" for m in self.metrics] if self.has_null else [])
        lines = [
            f"Similarity of `{self.model_a}` (A) and `{self.model_b}` (B) on {self.images} images.",
            *(
                [
                    "",
                    f"(null): the same metric with A's image i paired with another place of B's image i+1, {NULL_MEANING}.",
                ]
                if self.has_null
                else []
            ),
            "",
            *provenance_lines(self.provenance),
            "| layer | features A | features B | datapoints | " + " | ".join(columns) + " |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in columns) + " |",
        ]
        for entry in self.layers:
            values = [_number(entry.values[m]) for m in self.metrics]
            if self.has_null:
                values += [_number(entry.null.get(m)) for m in self.metrics]
            row = [
                _markdown_cell(entry.name),
                str(entry.features_a),
                str(entry.features_b),
                str(entry.datapoints),
                *values,
            ]
            lines.append("| " + " | ".join(row) + " |")
        notes = [f"- {_markdown_cell(entry.name)}: {entry.note}" for entry in self.layers if entry.note]
        text = "\n".join(lines + ([""] + notes if notes else [])) + "\n"
        if path is not None:
            write_text_atomic(path, text)
        return text

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        from timm_transfusion.viz.similarity import plot_similarity

        lines = {metric: self.column(metric) for metric in self.metrics}
        nulls = {f"{m} (null)": self.null_column(m) for m in self.metrics} if self.has_null else {}
        title = title or f"{self.model_a} vs {self.model_b} ({self.images} images)"
        names = [entry.name for entry in self.layers]
        return plot_similarity(names, lines, path, title=title, dashed=nulls)

    def save(self, directory: str | Path) -> dict[str, Path]:
        """similarity.json, similarity.csv, similarity.md and similarity.png in ``directory``, all or none.

        Each file is rendered to a temporary beside its target; the four are renamed into place only once
        all of them rendered, so a failure leaves the folder as it was.
        """
        directory = Path(directory)
        paths = {kind: directory / f"similarity.{kind}" for kind in REPORT_FILES}
        blocked = [str(path) for path in paths.values() if path.exists() and not path.is_file()]
        if blocked:
            raise ReportPathError(f"cannot write the report: {blocked} exist and are not regular files")
        writers = {"json": self.to_json, "csv": self.to_csv, "md": self.to_markdown, "png": self.plot}
        with ExitStack() as renames:
            for kind, path in paths.items():
                writers[kind](renames.enter_context(atomic_path(path)))
        return paths


def describe_side(side: dict) -> str:
    """``runs/acc1 (random init, seed 1)`` / ``resnet50 (pretrained weights)`` from one provenance side."""
    if side.get("random"):
        weights = f"random init of its architecture, seed {side.get('seed')}"
    else:
        weights = "trained weights" if side.get("folder") else "pretrained weights"
    where = f", folder {side['folder']}" if side.get("folder") else ""
    return f"`{side.get('source')}` ({weights}{where})"


def provenance_lines(provenance: dict) -> list[str]:
    """Markdown bullets saying what was compared; none for reports written before provenance was recorded."""
    if not provenance:
        return []
    data = provenance.get("data", {})
    lines = [f"- A: {describe_side(provenance['a'])}", f"- B: {describe_side(provenance['b'])}"]
    if data:
        limit = f", first {data['limit']}" if data.get("limit") else ""
        lines.append(
            f"- images: `{data.get('dataset')}` split `{data.get('split')}`{limit}, {data.get('img_size')} px; "
            f"datapoints per layer in the table (up to {data.get('max_positions')} positions per image, "
            f"seed {data.get('position_seed')})"
        )
    return [*lines, ""]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _markdown_cell(text: str) -> str:
    """``text`` for a Markdown table cell: a paired layer's ``a|b`` would otherwise split the row."""
    return text.replace("|", "\\|")


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
