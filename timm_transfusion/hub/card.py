"""Render the model card of a run: ``ModelCardData`` metadata + the Jinja template in ``hub_cards/``."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants
from safetensors import safe_open

from ..files import write_text_atomic
from ..init.errors import UnknownInitError
from ..init.registry import resolve_init
from ..run_folder import RUN_CONTROL_KEYS
from ..similarity import SimilarityReport
from ..source_kind import source_kind
from . import layout
from .plots import add_missing_plots
from .run import RunFolder, load_run_folder

TEMPLATE = "model_card.md"
DEFAULT_LICENSE = "apache-2.0"
# names of medical imaging datasets (MedMNIST family, fundus, chest X-ray, dermoscopy, ...)
MEDICAL_DATASETS = re.compile(
    r"retina|fundus|diabetic|pneumonia|chest|x-?ray|chexpert|derma|isic|ham10000|octmnist|pathmnist|bloodmnist"
    r"|breast|mammo|organ[acs]mnist|tissuemnist|medmnist|medical|mri|kvasir"
)
METRICS = {"auc": ("roc_auc", "AUC"), "accuracy": ("accuracy", "Accuracy")}

IMAGE_LINK_WITH_ALT = r"!\[([^\]]*)\]\(([^)\s]+)\)"
IMAGE_LINK = r"!\[[^\]]*\]\(([^)\s]+)\)"


def template_text() -> str:
    """``hub_cards/model_card.md`` as installed, read through importlib.resources (works from a zip too)."""
    return resources.files("timm_transfusion.hub_cards").joinpath(TEMPLATE).read_text(encoding="utf-8")


def explain_init(init: str) -> str:
    """What the init ``init`` does, in the words it was registered with (``timm_transfusion.list_inits()``)."""
    try:
        entry, params = resolve_init(init)
    except UnknownInitError:
        return "an initializer not registered in this installation; see `timm_transfusion.list_inits()`."
    values = ", ".join(f"{name} = {value}" for name, value in params.items())
    return entry.description + (f" ({values})" if values else "") + "."


def init_source_of(summary: dict[str, Any]) -> str | None:
    """Where the init took weights from: ``init_source``, or the model's default pretrained weights."""
    if summary.get("init_source"):
        return summary["init_source"]
    return summary.get("model") if summary.get("init") not in (None, "random") else None


def base_model_of(init_source: str | None) -> str | None:
    """The Hub repo the init's source weights came from, if any (``hf-hub:org/name`` or a timm name)."""
    if not init_source:
        return None
    kind = source_kind(init_source)
    if kind == "hf-hub":
        return init_source.removeprefix("hf-hub:").split("@")[0]
    if kind != "timm":
        return None
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(init_source)
    except RuntimeError:  # a timm model name with an unknown pretrained tag
        return None
    return getattr(cfg, "hf_hub_id", None) or None


def dataset_names(spec: str | None) -> tuple[str | None, str | None]:
    """``(display name, Hub dataset id or None)`` of a dataset spec such as ``npz:data/retinamnist.npz``."""
    if not spec:
        return None, None
    kind, _, rest = spec.partition(":")
    if kind in ("hf", "synthetic"):  # NAME[:CONFIG]
        name = rest.split(":")[0]
        if kind == "synthetic":
            return f"synthetic {name}", None
        on_hub = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) is not None and not Path(name).exists()
        return name, name if on_hub else None
    return Path(rest or spec).stem or spec, None


def is_medical(dataset: str | None) -> bool:
    return bool(dataset) and MEDICAL_DATASETS.search(dataset.lower()) is not None


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value).replace("|", "\\|")  # keep markdown table cells intact


def count_parameters(weights: Path) -> int:
    """Number of values in the state dict, batchnorm running statistics excluded."""
    total = 0
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                shape = f.get_slice(key).get_shape()
                total += math.prod(shape)
    return total


def is_plugin_architecture(architecture: str) -> bool:
    """True when ``architecture`` is registered by timm-transfusion rather than stock timm."""
    import timm

    if not timm.models.is_model(architecture):
        return True
    entrypoint = timm.models.model_entrypoint(architecture)
    registered = getattr(entrypoint, "fn", entrypoint)  # the init= extension hands timm an InitEntrypoint
    return registered.__module__.startswith("timm_transfusion")


def described_architecture(run: RunFolder) -> str:
    """The trained model's name; a slim ResNet saved as stock timm's ResNet also says how it is rebuilt."""
    trained = run.summary.get("model")
    if not trained or trained == run.architecture:
        return run.architecture
    args = ", ".join(
        f"{k}={_format(v)}" for k, v in run.config.get("model_args", {}).items() if k == "channels"
    )
    return f"{trained} (stock timm `{run.architecture}`{' with ' + args if args else ''})"


def usage_snippet(repo_id: str, *, architecture: str, revision: str | None, multilabel: bool) -> str:
    """A script that loads the pushed model with stock timm and classifies one (random) image."""
    model_id = f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")
    lines = ["import timm", "import torch"]
    if is_plugin_architecture(architecture):
        lines.append(
            f"import timm_transfusion  # registers {architecture!r}: stock timm cannot build it without the plugin"
        )
    activation = "sigmoid()" if multilabel else "softmax(dim=-1)"
    lines += [
        "",
        f'model = timm.create_model("{model_id}", pretrained=True).eval()',
        "config = timm.data.resolve_model_data_config(model)",
        "transform = timm.data.create_transform(**config, is_training=False)",
        "# for a real image: batch = transform(PIL.Image.open(path).convert('RGB')).unsqueeze(0)",
        'batch = torch.rand(1, *config["input_size"])',
        "with torch.no_grad():",
        f"    probabilities = model(batch).{activation}",
        "print(probabilities)",
    ]
    return "\n".join(lines)


def relink_images(markdown: str, link: Callable[[str], str | None]) -> str:
    """Point the relative image links of ``markdown`` at ``link(target)``; drop images it cannot place."""

    def replace(match: re.Match) -> str:
        alt, target = match.groups()
        if re.match(r"[a-z]+://", target):
            return match.group(0)
        new_target = link(target)
        return f"![{alt}]({new_target})" if new_target else ""

    return re.sub(IMAGE_LINK_WITH_ALT, replace, markdown)


def card_data(run: RunFolder, *, repo_id: str, license: str = DEFAULT_LICENSE) -> ModelCardData:
    """YAML metadata: library, tags, base model, datasets, license and model-index results."""
    summary = run.summary
    init = summary.get("init")
    dataset, hub_dataset = dataset_names(summary.get("dataset"))
    tags = ["timm", "image-classification", "transfusion"]
    if init:
        tags.append(init)
    if is_medical(dataset):
        tags.append("medical-imaging")
    results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=hub_dataset or dataset,
            dataset_name=dataset,
            dataset_split=summary.get("split"),
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=float(summary["final"][key]),
        )
        for key, (metric_type, metric_name) in METRICS.items()
        if dataset and summary.get("final", {}).get(key) is not None
    ]
    return ModelCardData(
        model_name=repo_id.split("/")[-1],
        library_name="timm",
        pipeline_tag="image-classification",
        license=license,
        tags=tags,
        base_model=base_model_of(init_source_of(summary)),
        datasets=[hub_dataset] if hub_dataset else None,
        eval_results=results or None,
    )


def render_card(
    run: RunFolder,
    *,
    repo_id: str,
    files: dict[str, Path],
    links: dict[str, str] | None = None,
    revision: str | None = None,
    license: str = DEFAULT_LICENSE,
    hub_url: str | None = None,
) -> ModelCard:
    """The card of ``run`` as it will be pushed to ``repo_id``.

    ``files`` maps repo paths to local files (see :func:`layout.collect_files`); images are linked by repo
    path unless ``links`` maps a repo path to another target (local previews link to the run folder).
    """
    links = links or {}

    def link(repo_path: str) -> str | None:
        return links.get(repo_path, repo_path) if repo_path in files else None

    summary = run.summary
    data = card_data(run, repo_id=repo_id, license=license)
    dataset, _ = dataset_names(summary.get("dataset"))
    hidden = {"final", "steps_to_threshold"}
    setup = {k: v for k, v in summary.items() if k not in hidden}
    setup.update({k: v for k, v in run.train_args.items() if k not in setup and k not in RUN_CONTROL_KEYS})
    thresholds = sorted(summary.get("steps_to_threshold", {}).items(), key=lambda item: float(item[0]))
    similarity = None
    if f"{layout.SIMILARITY}/similarity.json" in files:
        report = json.loads(files[f"{layout.SIMILARITY}/similarity.json"].read_text(encoding="utf-8"))
        similarity = SimilarityReport.from_dict(report).to_markdown().strip()
    experiment_results = None
    if f"{layout.EXPERIMENT}/results.md" in files:
        markdown = files[f"{layout.EXPERIMENT}/results.md"].read_text(encoding="utf-8").strip()
        experiment_results = relink_images(markdown, lambda target: link(f"{layout.EXPERIMENT}/{target}"))
    shown = set(re.findall(IMAGE_LINK, experiment_results or ""))
    experiment_plots = [
        (caption, target)
        for name, caption in (
            ("convergence.png", "Convergence of every init"),
            ("filters.png", "First-layer filters"),
        )
        if (target := link(f"{layout.EXPERIMENT}/{name}")) and target not in shown
    ]
    return ModelCard.from_template(
        data,
        template_str=template_text(),
        title=repo_id.split("/")[-1],
        repo_id=repo_id,
        hub_url=hub_url or constants.ENDPOINT,
        architecture=described_architecture(run),
        num_classes=run.config.get("num_classes"),
        num_params=f"{count_parameters(run.path / 'model.safetensors'):,}",
        dataset=dataset,
        split=summary.get("split"),
        init=summary.get("init"),
        init_source=init_source_of(summary),
        init_explanation=explain_init(summary.get("init", "")),
        seed=summary.get("seed"),
        setup_rows=[(k, _format(v)) for k, v in setup.items() if v is not None],
        final_rows=[(k, _format(v)) for k, v in summary.get("final", {}).items()],
        convergence_rows=[(t, "not reached" if s is None else s) for t, s in thresholds],
        convergence_plot=link(f"{layout.REPORTS}/convergence.png"),
        filters_plot=link(f"{layout.REPORTS}/filters.png"),
        similarity=similarity,
        similarity_plot=link(f"{layout.SIMILARITY}/similarity.png"),
        experiment_results=experiment_results,
        experiment_plots=experiment_plots,
        usage=usage_snippet(
            repo_id,
            architecture=run.architecture,
            revision=revision,
            multilabel=bool(summary.get("multilabel")),
        ),
        files=[(path, layout.describe(path)) for path in sorted({"README.md", *files})],
    )


def write_card(
    run_dir: str | Path,
    *,
    similarity: str | Path | None = None,
    experiment: str | Path | None = None,
    repo_id: str | None = None,
    license: str = DEFAULT_LICENSE,
    force: bool = False,
) -> Path:
    """Render the card of ``run_dir`` into ``run_dir/README.md`` for a local preview; returns its path.

    Also draws ``convergence.png`` and ``filters.png`` into ``run_dir`` when it lacks them. Images link to
    the local files; ``repo_id`` (default ``your-username/<run folder name>``) only fills the usage snippet.
    A similarity report about another model A is refused unless ``force``.
    """
    run = load_run_folder(run_dir)
    files = layout.collect_files(run, similarity=similarity, experiment=experiment, force=force)
    files = add_missing_plots(run, files, run.path)
    links = {p: Path(os.path.relpath(f.resolve(), run.path.resolve())).as_posix() for p, f in files.items()}
    card = render_card(
        run,
        repo_id=repo_id or f"your-username/{run.path.resolve().name}",
        files=files,
        links=links,
        license=license,
    )
    return write_text_atomic(run.path / "README.md", str(card))
