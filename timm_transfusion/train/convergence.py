"""Convergence: the evaluation history of a run and the steps it took to reach each AUC threshold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def threshold_key(threshold: float) -> str:
    """The JSON key of a threshold: ``0.7`` -> ``"0.7"``."""
    return format(threshold, "g")


def steps_to_threshold(
    records: Sequence[dict], thresholds: Iterable[float], *, key: str = "auc"
) -> dict[str, int | None]:
    """First evaluated ``step`` whose ``key`` is >= each threshold (None if never reached).

    ``records`` are metrics.jsonl lines in step order, e.g. ``[{"step": 100, "auc": 0.68}, ...]``.
    """
    result: dict[str, int | None] = {}
    for threshold in thresholds:
        reached = (r["step"] for r in records if r.get(key) is not None and r[key] >= threshold)
        result[threshold_key(threshold)] = next(reached, None)
    return result


class TrainHistory:
    """Evaluation records plus progress counters; checkpointed with the run (``state_dict``/``load_state_dict``)."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.step = 0
        self.elapsed_s = 0.0
        self.running_loss = 0.0  # training loss summed since the last evaluation, and its batch count
        self.running_count = 0

    def state_dict(self) -> dict:
        return {
            "records": list(self.records),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "running_loss": self.running_loss,
            "running_count": self.running_count,
        }

    def load_state_dict(self, state: dict) -> None:
        self.records, self.step, self.elapsed_s = (
            list(state["records"]),
            int(state["step"]),
            state["elapsed_s"],
        )
        self.running_loss, self.running_count = state["running_loss"], int(state["running_count"])
