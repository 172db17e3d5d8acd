"""SimilarityReport: layers × metrics, written as JSON, CSV, Markdown and a PNG."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import write_text_atomic


@dataclass(frozen=True)
class LayerSimilarity:
    """One compared layer pair: its sizes, the datapoints seen, and metric -> value (None if undefined)."""

    layer_a: str
    layer_b: str
    features_a: int
    features_b: int
    datapoints: int
    values: dict[str, float | None]
    note: str | None = None

    @property
    def name(self) -> str:
        return self.layer_a if self.layer_a == self.layer_b else f"{self.layer_a}|{self.layer_b}"


@dataclass(frozen=True)
class SimilarityReport:
    """Layer-wise similarity of model A and model B on the same images."""

    model_a: str
    model_b: str
    metrics: tuple[str, ...]
    layers: list[LayerSimilarity]
    images: int
    settings: dict = field(default_factory=dict)

    def value(self, layer: str, metric: str) -> float | None:
        for entry in self.layers:
            if entry.name == layer:
                return entry.values[metric]
        raise KeyError(f"no layer {layer!r} in the report; layers: {[entry.name for entry in self.layers]}")

    def column(self, metric: str) -> list[float | None]:
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r} in the report; metrics: {list(self.metrics)}")
        return [entry.values[metric] for entry in self.layers]

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
        )

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            write_text_atomic(path, text)
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["layer_a", "layer_b", "features_a", "features_b", "datapoints", *self.metrics])
        for entry in self.layers:
            values = ["" if entry.values[m] is None else repr(entry.values[m]) for m in self.metrics]
            writer.writerow(
                [entry.layer_a, entry.layer_b, entry.features_a, entry.features_b, entry.datapoints, *values]
            )
        if path is not None:
            write_text_atomic(path, buffer.getvalue())
        return buffer.getvalue()

    def to_markdown(self, path: str | Path | None = None) -> str:
        lines = [
            f"Similarity of `{self.model_a}` (A) and `{self.model_b}` (B) on {self.images} images.",
            "",
            "| layer | features A | features B | datapoints | " + " | ".join(self.metrics) + " |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in self.metrics) + " |",
        ]
        for entry in self.layers:
            values = ["n/a" if entry.values[m] is None else f"{entry.values[m]:.4f}" for m in self.metrics]
            row = [entry.name, str(entry.features_a), str(entry.features_b), str(entry.datapoints), *values]
            lines.append("| " + " | ".join(row) + " |")
        notes = [f"- {entry.name}: {entry.note}" for entry in self.layers if entry.note]
        text = "\n".join(lines + ([""] + notes if notes else [])) + "\n"
        if path is not None:
            write_text_atomic(path, text)
        return text

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        from timm_transfusion.viz.similarity import plot_similarity

        return plot_similarity(self, path, title=title)

    def save(self, directory: str | Path) -> dict[str, Path]:
        """similarity.json, similarity.csv, similarity.md and similarity.png in ``directory``."""
        directory = Path(directory)
        paths = {kind: directory / f"similarity.{kind}" for kind in ("json", "csv", "md", "png")}
        self.to_json(paths["json"])
        self.to_csv(paths["csv"])
        self.to_markdown(paths["md"])
        self.plot(paths["png"])
        return paths


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
