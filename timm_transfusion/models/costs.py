"""What a model costs: parameters, multiply-accumulates per image (torch's FlopCounterMode), images/s.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on a weightless (meta-device) copy, so
counting resnet50 takes a fraction of a second and no memory; it counts matrix products and
convolutions (2 FLOPs per multiply-accumulate), not normalization, activations or pooling, which is the
convention behind figures such as "ResNet-50: 4.1 GMACs at 224 px". Throughput is measured on the
caller's device in eval mode, each round timed separately so its spread can be reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "ModelCosts",
    "Throughput",
    "costs_table",
    "count_macs",
    "count_parameters",
    "measure_throughput",
    "model_costs",
]


@dataclass(frozen=True)
class Throughput:
    """Images per second of each timed round, and their median / range."""

    rounds: tuple[float, ...]
    batch_size: int
    threads: int

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    def __str__(self) -> str:
        return f"{self.median:,.1f} [{min(self.rounds):,.1f}–{max(self.rounds):,.1f}]"


@dataclass(frozen=True)
class ModelCosts:
    """Costs of one architecture at one input size."""

    name: str
    img_size: int
    params: int
    macs: int
    throughput: Throughput | None = None

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(name: str, *, img_size: int, in_chans: int = 3, **kwargs) -> int:
    """Multiply-accumulates of one forward pass of one image through timm model `name`.

    Counted by FlopCounterMode (FLOPs / 2) on the meta device, so no weights are allocated.
    """
    with torch.device("meta"):
        model = timm.create_model(name, in_chans=in_chans, **kwargs).eval()
        image = torch.empty(1, in_chans, img_size, img_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return counter.get_total_flops() // 2


def measure_throughput(
    model: nn.Module, *, img_size: int, batch_size: int = 8, rounds: int = 5, batches_per_round: int = 2
) -> Throughput:
    """Eval-mode images/s of `model` on random images: one warm-up batch, then `rounds` timed rounds."""
    parameter = next(model.parameters())
    images = torch.randn(batch_size, model.pretrained_cfg["input_size"][0], img_size, img_size)
    images = images.to(parameter.device, parameter.dtype)
    model = model.eval()
    per_round = []
    with torch.inference_mode():
        model(images)
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(batches_per_round):
                model(images)
            if images.is_cuda:
                torch.cuda.synchronize()
            per_round.append(batch_size * batches_per_round / (time.perf_counter() - start))
    return Throughput(tuple(per_round), batch_size, torch.get_num_threads())


def model_costs(name: str, *, img_size: int = 224, measure: bool = True, **throughput_options) -> ModelCosts:
    """Parameters (1000 classes), MACs per image at `img_size` and, with `measure`, CPU images/s."""
    model = timm.create_model(name)
    throughput = measure_throughput(model, img_size=img_size, **throughput_options) if measure else None
    return ModelCosts(
        name=name,
        img_size=img_size,
        params=count_parameters(model),
        macs=count_macs(name, img_size=img_size),
        throughput=throughput,
    )


def costs_table(costs: list[ModelCosts]) -> str:
    """A markdown table: parameters, GMACs and (when measured) images/s, median [min–max] over rounds."""
    measured = [c for c in costs if c.throughput is not None]
    header = "| model | params (1000 classes) | GMACs / image | px |"
    rule = "| --- | ---: | ---: | ---: |"
    if measured:
        t = measured[0].throughput
        header += f" images/s, batch {t.batch_size}, {t.threads} thread(s): median [min–max] |"
        rule += " ---: |"
    rows = []
    for c in costs:
        row = f"| `{c.name}` | {c.params:,} | {c.gmacs:.3f} | {c.img_size} |"
        if measured:
            row += f" {c.throughput or '–'} |"
        rows.append(row)
    return "\n".join([header, rule, *rows])
