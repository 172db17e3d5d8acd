"""Time of meanvar and transfusion-2 on resnet50 with the source already loaded (goal: under 0.5 s here).

Run: .venv/bin/python benchmarks/bench_init.py [--model resnet50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch
from timm.models._factory import create_model as stock_create_model

from timm_transfusion import apply_init
from timm_transfusion.init.apply import run_init
from timm_transfusion.init.context import InitContext


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    source = stock_create_model(args.model).state_dict()
    model = stock_create_model(args.model)
    print(
        f"{args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
        f"{torch.get_num_threads()} threads"
    )
    for init in ("meanvar", "transfusion-2"):
        # as inside create_model: the freshly built model is its own random reference
        in_create = best_of(
            args.repeats,
            lambda init=init: run_init(
                InitContext(model=model, seed=0, source=source, reference_state=model.state_dict()), init, {}
            ),
        )
        # apply_init on an existing model: rebuilds a fresh timm model for the random parts
        standalone = best_of(args.repeats, lambda init=init: apply_init(model, init, source=source, seed=0))
        print(
            f"{init:14s} in create_model: {in_create:.3f} s   apply_init on an existing model: {standalone:.3f} s"
        )


if __name__ == "__main__":
    main()
