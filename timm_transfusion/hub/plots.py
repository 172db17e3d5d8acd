"""The pictures a card shows that a run folder may lack: its convergence curve and its first-layer filters."""

from __future__ import annotations

from pathlib import Path

from . import layout
from .run import RunFolder


def convergence_plot(run: RunFolder, path: Path) -> Path | None:
    """Evaluation AUC against training steps from ``metrics.jsonl``; None when no evaluation has an AUC."""
    from timm_transfusion.viz.convergence import plot_convergence

    records = [r for r in run.metrics if r.get("auc") is not None and r.get("step") is not None]
    if not records:
        return None
    thresholds = [float(t) for t in run.summary.get("steps_to_threshold", {})]
    title = f"{run.architecture}, {run.summary.get('init', 'fine-tuning')}: evaluation AUC"
    return plot_convergence(
        {run.summary.get("init", "run"): [records]}, path, thresholds=thresholds, title=title
    )


def filters_plot(run: RunFolder, path: Path) -> Path | None:
    """The trained first convolution's filters as an RGB mosaic; None when the model has none over RGB."""
    import timm

    from timm_transfusion.viz.figures import new_figure, save_png
    from timm_transfusion.viz.filters import NoFilterError, filter_grid, first_conv_weight

    model = timm.create_model(f"local-dir:{run.path}", pretrained=True)
    try:
        weight = first_conv_weight(model)
    except NoFilterError:
        return None
    mosaic = filter_grid(weight)
    fig = new_figure(figsize=(6, 0.6 + 6 * mosaic.shape[0] / mosaic.shape[1]))
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        f"{run.architecture}: first-layer filters after training (each scaled to its own range)", fontsize=9
    )
    fig.tight_layout()
    return save_png(fig, path, dpi=130)


def add_missing_plots(run: RunFolder, files: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Draw ``reports/convergence.png`` / ``reports/filters.png`` into ``folder`` when ``files`` lacks them."""
    files = dict(files)
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw in (("convergence.png", convergence_plot), ("filters.png", filters_plot)):
        key = f"{layout.REPORTS}/{name}"
        if key not in files and (drawn := draw(run, folder / name)) is not None:
            files[key] = drawn
    return files
