"""The whole timm zoo through the initializers and compare(): one model per module, a table of checks.

For each module of `timm.list_modules()` (timm's and this plugin's) the model with the fewest parameters
(counted on the meta device) is built small (num_classes=5, 64 px where it accepts that, depth=2 above
50 M parameters where its class takes `depth`) and checked
against a perturbed random source model of another head (num_classes=3, passed as an nn.Module):

- meanvar:     every sampled tensor's mean and variance lie in their 1e-6 two-sided bands around the
               source's (normal mean band; chi-square variance band); other tensors are timm's seeded init;
- norms:       every normalization tensor holds its identity value, and no class that owns tensors and
               is named like a norm lacks an entry in `init.norms.NORM_IDENTITIES`;
- transfusion: transfusion-0 and transfusion-1 (where the model has a block group) equal the source at
               and below group k and `init="random"` with the same seed above it;
- pretrained:  every tensor is the source's, except the head of another shape, which is random;
- forward:     the meanvar and transfusion models give finite (2, 5) logits;
- compare:     compare(transfusion model, meanvar model) on the default layers gives finite linear CKA.

A check that an init refuses with its documented error (`GroupMatcherError`: no group_matcher) is
"refused"; anything else raised is a failure, shown as its type and first line.

Run:  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/zoo_sweep.py --out runs/zoo
      (--models a,b,c checks those names instead; the table is written as zoo.md and zoo.json). The
      choice of models is kept in benchmarks/zoo_models.json; --choices NEW.json chooses afresh.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

import timm_transfusion  # noqa: F401  (the import registers the plugin's modules: cbr, mobilenetv1, …)
from timm_transfusion.files import write_text_atomic
from timm_transfusion.init import GroupMatcherError, block_groups
from timm_transfusion.init.norms import norm_identities, norm_identity
from timm_transfusion.similarity import compare

CHECKS = ("meanvar", "norms", "transfusion", "pretrained", "forward", "compare")
REFUSALS = (GroupMatcherError,)
ALPHA = 1e-6
NUM_CLASSES, SOURCE_CLASSES, SMALL_SIZE = 5, 3, 64
LARGE = 50_000_000


@dataclass
class ModelResult:
    """One row of the table: the model, how it was built, and each check's outcome."""

    module: str
    model: str
    params_m: float = math.nan
    input_size: tuple[int, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every check ok or refused with a documented error."""
        return all(not outcome.startswith("FAIL") for outcome in self.checks.values())


class CheckFailure(AssertionError):
    """A sweep check found a wrong value."""


def smallest_models(modules: list[str]) -> dict[str, str]:
    """{module: its model with the fewest parameters}, counted on the meta device (nothing allocated)."""
    chosen = {}
    for module in tqdm(modules, desc="choosing models", unit="module"):
        sizes = {}
        for name in timm.list_models(module=module):
            try:
                with torch.device("meta"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sizes[name] = sum(p.numel() for p in timm.create_model(name).parameters())
            except Exception:  # a model that cannot be built on meta is not a candidate
                continue
        if sizes:
            chosen[module] = min(sizes, key=lambda name: (sizes[name], name))
    return chosen


def module_of(name: str) -> str:
    """The `timm.list_modules()` entry that registers model `name`."""
    modules = [module for module in timm.list_modules() if name in timm.list_models(module=module)]
    if not modules:
        raise SystemExit(f"unknown model {name!r}; see timm.list_models()")
    return modules[0]


def _build(name: str, kwargs: dict[str, Any], **init: Any) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model(name, num_classes=NUM_CLASSES, **kwargs, **init).eval()


def _images(model: nn.Module, size: tuple[int, int], batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, getattr(model, "in_chans", 3), *size, generator=generator)


@torch.no_grad()
def _logits_ok(model: nn.Module, images: torch.Tensor) -> str | None:
    """None when the model's logits are finite and (B, NUM_CLASSES); otherwise what is wrong."""
    output = model(images)
    if not isinstance(output, torch.Tensor) or output.shape != (images.shape[0], NUM_CLASSES):
        return f"output {getattr(output, 'shape', type(output).__name__)}"
    return None if bool(torch.isfinite(output).all()) else "non-finite logits"


def small_build(name: str) -> tuple[dict[str, Any], tuple[int, int]]:
    """Arguments and input size that build and run `name` small: img_size=64, else 64 px, else its
    pretrained input size; models above `LARGE` parameters get depth=2 where their class takes `depth`."""
    cfg = timm.get_pretrained_cfg(name)
    default = tuple((cfg.input_size if cfg else (3, 224, 224))[1:])
    fixed = bool(cfg and cfg.fixed_input_size)
    small = (SMALL_SIZE, SMALL_SIZE)
    sizes = [({"img_size": SMALL_SIZE}, small)] + ([] if fixed else [({}, small)]) + [({}, default)]
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = timm.create_model(name)
    large = sum(p.numel() for p in meta.parameters()) > LARGE
    shrinks = [{"depth": 2}, {}] if large and "depth" in inspect.signature(type(meta)).parameters else [{}]
    error: Exception | None = None
    for shrink in shrinks:
        for kwargs, size in sizes:
            try:
                model = _build(name, {**shrink, **kwargs}, init="random", init_seed=0)
                if _logits_ok(model, _images(model, size, 2)) is None:
                    return {**shrink, **kwargs}, size
            except Exception as caught:  # TypeError for img_size, shape errors for small inputs
                error = caught
    raise RuntimeError(f"{name} builds and runs at none of {[c[1] for c in sizes]}: {error}")


def perturbed_source(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """A random model of another head whose every float tensor has its own scale and shift (norms not identity)."""
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")
        torch.manual_seed(1)
        source = timm.create_model(name, **{**kwargs, "num_classes": SOURCE_CLASSES})
    generator = torch.Generator().manual_seed(2)
    unique = {id(t): t for t in source.state_dict(keep_vars=True).values() if t.is_floating_point()}
    with torch.no_grad():
        for tensor in unique.values():
            # mild enough that eval-mode networks of 100 layers with identity norms stay finite
            spread = tensor.std().nan_to_num(0).item() if tensor.numel() > 1 else 0.0
            scale, shift = torch.rand(2, generator=generator).tolist()
            tensor.mul_(1 + 0.5 * scale).add_(0.1 * shift * (spread or 1.0))
    return source.eval()


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailure(message)


def check_meanvar(model: nn.Module, source: dict, random: dict) -> str:
    """Sampled tensors in their mean/variance bands; head of another shape and buffers as timm's init."""
    z = stats.norm.isf(ALPHA / 2)
    identities = norm_identities(model)
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    sampled = 0
    for key, value in model.state_dict().items():
        if key in identities:
            continue
        if key not in params or source[key].shape != value.shape or not value.is_floating_point():
            _expect(_equal(value, random[key]), f"{key} is not timm's seeded init")
            continue
        src_var, src_mean = torch.var_mean(source[key].double(), correction=0)
        var, mean = torch.var_mean(value.double(), correction=0)
        n = value.numel()
        if n == 1 or src_var == 0:
            _expect(
                torch.allclose(value.double(), src_mean.expand_as(value)), f"{key} is not the source mean"
            )
            continue
        sigma = src_var.sqrt().item()
        # the small slack covers float32 rounding of the drawn values, far inside the bands at any n
        _expect(abs(mean.item() - src_mean.item()) <= z * sigma / math.sqrt(n) + 1e-6 * sigma, f"{key} mean")
        ratio = n * var.item() / src_var.item()
        low, high = stats.chi2.ppf(ALPHA / 2, n - 1), stats.chi2.isf(ALPHA / 2, n - 1)
        _expect(low * (1 - 1e-5) <= ratio <= high * (1 + 1e-5), f"{key} variance ratio {ratio / n:.4f}")
        sampled += 1
    _expect(sampled > 0, "no tensor was sampled")
    return f"ok ({sampled} sampled)"


def check_norms(model: nn.Module) -> str:
    """Every norm tensor at its identity; every norm-named class owning tensors known to the table."""
    identities = norm_identities(model)
    state = model.state_dict()
    for key, value in identities.items():
        _expect(bool((state[key] == value).all()), f"{key} is not {value}")
    for name, module in model.named_modules():
        owns = any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False)
        )
        if owns and "norm" in type(module).__name__.lower() and norm_identity(module) is None:
            raise CheckFailure(f"{name} is a {type(module).__name__}, which the norm table does not list")
    return f"ok ({len(identities)} tensors)"


def check_transfusion(model: nn.Module, source: dict, random: dict, k: int) -> str:
    """Group ≤ k: the source's tensor (a head of another shape excepted); above: timm's seeded init."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = block_groups(model)
    for key, value in model.state_dict().items():
        copied = groups.group_of[key] <= k and source[key].shape == value.shape
        _expect(
            _equal(value, source[key] if copied else random[key]), f"{key} (group {groups.group_of[key]})"
        )
    return f"ok (k={k} of {groups.num_blocks})"


def check_pretrained(model: nn.Module, source: dict, random: dict) -> str:
    heads = 0
    for key, value in model.state_dict().items():
        if source[key].shape == value.shape:
            _expect(_equal(value, source[key]), f"{key} is not the source's")
        else:
            heads += 1
            _expect(_equal(value, random[key]), f"{key} (head) is not timm's seeded init")
    _expect(heads > 0, f"no tensor of the {SOURCE_CLASSES}-class head differs in shape")
    return f"ok ({heads} head tensors random)"


def check_compare(model_a: nn.Module, model_b: nn.Module, images: torch.Tensor) -> str:
    report = compare(model_a, model_b, [images], metrics=("linear_cka",), max_positions=4)
    values = [entry.values["linear_cka"] for entry in report.layers]
    finite = sum(v is not None and math.isfinite(v) for v in values)
    _expect(finite > 0, f"no finite linear CKA among {len(values)} layers")
    return f"ok ({finite}/{len(values)} layers)"


def _outcome(check: Callable[[], str]) -> str:
    try:
        return check()
    except REFUSALS as error:
        return f"refused {type(error).__name__}"
    except Exception as error:  # the sweep records every failure instead of stopping
        return _failure(error)


def _failure(error: Exception) -> str:
    first = (str(error).strip().splitlines() or [""])[0][:160]
    return f"FAIL {type(error).__name__}: {first}"


def check_model(
    name: str, module: str = "", kwargs: dict[str, Any] | None = None, size: tuple[int, int] | None = None
) -> ModelResult:
    """Run every check on `name` built with `kwargs` at `size` (probed with `small_build` when not given)."""
    start = time.perf_counter()
    result = ModelResult(module=module, model=name)
    try:
        if kwargs is None or size is None:
            kwargs, size = small_build(name)
        result.kwargs = kwargs
        random_model = _build(name, kwargs, init="random", init_seed=0)
        result.params_m = sum(p.numel() for p in random_model.parameters()) / 1e6
        result.input_size = (getattr(random_model, "in_chans", 3), *size)
        random = random_model.state_dict()
        source_model = perturbed_source(name, kwargs)
        source = source_model.state_dict()
    except Exception as error:  # a model the sweep cannot even build fails every check
        result.checks = dict.fromkeys(CHECKS, _failure(error))
        result.seconds = time.perf_counter() - start
        return result
    images = _images(random_model, size, 4)
    built: dict[str, nn.Module] = {}

    def init(name_of_init: str) -> nn.Module:
        built[name_of_init] = _build(name, kwargs, init=name_of_init, init_source=source_model, init_seed=0)
        return built[name_of_init]

    result.checks["meanvar"] = _outcome(lambda: check_meanvar(init("meanvar"), source, random))
    result.checks["norms"] = _outcome(lambda: check_norms(built["meanvar"]))
    result.checks["transfusion"] = _outcome(
        lambda: _transfusion(name, kwargs, source_model, source, random, built)
    )
    result.checks["pretrained"] = _outcome(lambda: check_pretrained(init("pretrained"), source, random))
    result.checks["forward"] = _outcome(lambda: _forward_all(built, images[:2]))
    pair = [built[key] for key in ("transfusion", "meanvar") if key in built]
    pair = pair if len(pair) == 2 else [random_model, built.get("meanvar", random_model)]
    result.checks["compare"] = _outcome(lambda: check_compare(*pair, images))
    result.seconds = time.perf_counter() - start
    return result


def _transfusion(
    name: str, kwargs: dict, source_model: nn.Module, source: dict, random: dict, built: dict
) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = min(1, block_groups(_build(name, kwargs, init="random", init_seed=0)).num_blocks)
    built["transfusion"] = _build(
        name, kwargs, init=f"transfusion-{k}", init_source=source_model, init_seed=0
    )
    return check_transfusion(built["transfusion"], source, random, k)


def _forward_all(built: dict[str, nn.Module], images: torch.Tensor) -> str:
    checked = [key for key in ("meanvar", "transfusion") if key in built]
    _expect(bool(checked), "no initialized model to run")
    for key in checked:
        problem = _logits_ok(built[key], images)
        _expect(problem is None, f"{key}: {problem}")
    return f"ok ({', '.join(checked)})"


def markdown_table(results: list[ModelResult]) -> str:
    """The sweep as a markdown table: one row per model, one column per check."""
    header = "| module | model | params (M) | input | " + " | ".join(CHECKS) + " | s |"
    rows = [header, "|" + "---|" * (len(CHECKS) + 5)]
    for r in results:
        cells = [r.module, f"`{r.model}`", f"{r.params_m:.2f}", "×".join(map(str, r.input_size))]
        cells += [r.checks.get(check, "").replace("|", "/") for check in CHECKS] + [f"{r.seconds:.1f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def coverage(results: list[ModelResult]) -> dict[str, dict[str, int]]:
    """Per check: how many models are ok, refused, failed."""
    counts = {}
    for check in CHECKS:
        outcomes = [r.checks.get(check, "FAIL") for r in results]
        counts[check] = {
            "ok": sum(o.startswith("ok") for o in outcomes),
            "refused": sum(o.startswith("refused") for o in outcomes),
            "failed": sum(o.startswith("FAIL") for o in outcomes),
        }
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/zoo"))
    parser.add_argument("--models", help="comma-separated model names instead of one per module")
    parser.add_argument(
        "--choices",
        type=Path,
        default=Path(__file__).with_name("zoo_models.json"),
        help="JSON {model: module}: read if it exists, else chosen (about 1,400 meta builds) and written",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.models:
        chosen = {name: module_of(name) for name in args.models.split(",")}
    elif args.choices and args.choices.is_file():
        chosen = json.loads(args.choices.read_text())
    else:
        chosen = {name: module for module, name in smallest_models(timm.list_modules()).items()}
        if args.choices:
            write_text_atomic(args.choices, json.dumps(chosen, indent=1))
    results = []
    for name, module in (bar := tqdm(chosen.items(), desc="sweep", unit="model")):
        bar.set_postfix_str(name)
        results.append(check_model(name, module=module))
        tqdm.write(markdown_table(results[-1:]).splitlines()[-1])
    wall = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    counts = coverage(results)
    summary = {"timm": timm.__version__, "models": len(results), "wall_s": wall, "coverage": counts}
    write_text_atomic(
        args.out / "zoo.json",
        json.dumps({**summary, "results": [asdict(r) for r in results]}, indent=1, default=str),
    )
    lines = [f"# Zoo sweep: {len(results)} models, timm {timm.__version__}, {wall / 60:.1f} min", ""]
    lines += ["| check | ok | refused | failed |", "|---|---|---|---|"]
    lines += [f"| {c} | {n['ok']} | {n['refused']} | {n['failed']} |" for c, n in counts.items()]
    write_text_atomic(args.out / "zoo.md", "\n".join(lines) + "\n\n" + markdown_table(results))
    print("\n".join(lines))
    print(f"table: {args.out / 'zoo.md'}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
