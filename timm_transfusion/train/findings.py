"""The paper's claims, each turned into a measured statistic, its interval and a verdict by one stated rule.

Nothing here is written by hand: every verdict comes from ``stats.verdict`` applied to an interval measured
on this grid. A claim the grid cannot measure (an init missing, too few seeds, an analysis not run) is
reported as inconclusive with the reason, never dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .analysis import InitRuns, contrast
from .stats import VERDICT_RULE, Claim, Contrast, Interval, verdict

EQUIVALENCE_MARGIN = 0.02  # AUC: "about the same final AUC" means within ±0.02


@dataclass(frozen=True)
class Finding:
    """One claim of the paper as tested here: the statistic, its interval, the test and the verdict."""

    claim: str
    statistic: str
    interval: Interval | None
    test: str
    verdict: str
    note: str = ""
    per_seed: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "statistic": self.statistic,
            "estimate": None if self.interval is None else self.interval.estimate,
            "low": None if self.interval is None else _finite_or_none(self.interval.low),
            "high": None if self.interval is None else _finite_or_none(self.interval.high),
            "level": None if self.interval is None else self.interval.level,
            "method": None if self.interval is None else self.interval.method,
            "test": self.test,
            "verdict": self.verdict,
            "note": self.note,
            "per_seed": {str(k): v for k, v in self.per_seed.items()},
        }


def _finite_or_none(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def judge(
    claim: str,
    statistic: str,
    measured: Contrast | Interval | None,
    kind: Claim,
    *,
    bound: float = 0.0,
    margin: float = 0.0,
    missing: str = "",
    note: str = "",
) -> Finding:
    """A ``Finding`` whose verdict is ``stats.verdict`` of the measured interval (inconclusive if absent)."""
    interval = measured.interval if isinstance(measured, Contrast) else measured
    per_seed = measured.per_seed if isinstance(measured, Contrast) else {}
    test = {
        "greater": f"> {bound:g}",
        "less": f"< {bound:g}",
        "equivalent": f"within {bound:g} ± {margin:g}",
    }[kind]
    result = verdict(interval, kind, bound=bound, margin=margin)
    if interval is None:
        note = "; ".join(filter(None, [missing or "not measured", note]))
    elif isinstance(measured, Contrast) and len(per_seed) < 2:
        result = "inconclusive"
        note = "; ".join(filter(None, ["1 seed: seed-to-seed variation unmeasured", note]))
    return Finding(claim, statistic, interval, test, result, note, per_seed)


def _lowest_transfusion(groups: Mapping[str, InitRuns], most: int = 2) -> str | None:
    """The deepest plain ``transfusion-k`` with k <= ``most`` in the grid (the paper: the lowest one or two)."""
    ks = [int(m.group(1)) for init in groups if (m := re.fullmatch(r"transfusion-(\d+)", init))]
    eligible = [k for k in ks if k <= most]
    return f"transfusion-{max(eligible)}" if eligible else None


def training_findings(groups: Mapping[str, InitRuns], *, margin: float = EQUIVALENCE_MARGIN) -> list[Finding]:
    """The claims about final AUC and convergence, from the grid's runs (``groups`` by init name)."""

    def absent(*inits: str | None) -> str:
        lacking = [i for i in inits if i is None or i not in groups]
        return (
            f"the grid has no {', '.join(str(i) for i in lacking)} runs"
            if lacking
            else "no seed has every run"
        )

    diff = {"pretrained": 1.0, "random": -1.0}
    meanvar = {"meanvar": 1.0, "random": -1.0}
    k_init = _lowest_transfusion(groups)
    findings = [
        judge(
            "Transfer ≈ random in final AUC (with enough data)",
            "final test AUC, pretrained − random",
            contrast(groups, diff, "final_auc"),
            "equivalent",
            margin=margin,
            missing=absent("pretrained", "random"),
        ),
        judge(
            "Transfer speeds convergence",
            "area under AUC vs log(step), pretrained − random",
            contrast(groups, diff, "area"),
            "greater",
            missing=absent("pretrained", "random"),
        ),
        judge(
            "Mean Var recovers part of the speed-up",
            "area under AUC vs log(step), meanvar − random",
            contrast(groups, meanvar, "area"),
            "greater",
            missing=absent("meanvar", "random"),
        ),
    ]
    weights = {k_init: 1.0, "random": -0.5, "pretrained": -0.5} if k_init else {}
    findings.append(
        judge(
            "Reusing the lowest block groups gives most of the speed-up",
            f"area, {k_init or 'transfusion-k (k ≤ 2)'} − (random + pretrained) / 2 (> 0: past half-way)",
            contrast(groups, weights, "area") if k_init else None,
            "greater",
            missing=absent(k_init, "random", "pretrained"),
        )
    )
    return findings


def findings_table(findings: list[Finding]) -> list[str]:
    """Markdown for the Findings section of results.md: one row per claim, then the rule behind the verdicts."""
    lines = [
        "| claim of the paper | statistic | estimate [95 % interval] | test | verdict |",
        "|---|---|---|---|---|",
    ]
    for f in findings:
        if f.interval is None:
            value = "-"
        elif _finite_or_none(f.interval.low) is None:
            value = f"{f.interval.estimate:.3f} [no interval]"
        else:
            value = f.interval.format()
        verdict_cell = f"**{f.verdict}**" + (f" ({f.note})" if f.note else "")
        lines.append(f"| {f.claim} | {f.statistic} | {value} | {f.test} | {verdict_cell} |")
    methods = sorted({f.interval.method for f in findings if f.interval is not None and f.interval.method})
    lines += ["", f"Verdict rule: {VERDICT_RULE}"]
    if methods:
        lines += ["Intervals: " + "; ".join(methods) + "."]
    return [*lines, ""]


def findings_json(findings: list[Finding], **context: object) -> str:
    """``findings.json``: the rule, the context (model, dataset, seeds, …) and every finding."""
    payload = {"rule": VERDICT_RULE, **context, "findings": [f.to_dict() for f in findings]}
    return json.dumps(payload, indent=2, allow_nan=False) + "\n"
