"""Evaluation on the full eval split: gathered across processes, scored with the offline evaluate modules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator

from ..data import LabelInfo
from .metrics import classification_metrics


def task_loss(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Cross-entropy (labels (B,)) or binary cross-entropy per label (labels (B, K) multi-hot); mean over batch."""
    if multilabel:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
    return torch.nn.functional.cross_entropy(logits, labels)


def scores_from_logits(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """(B, C) logits -> probabilities: sigmoid per label or softmax over classes."""
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)


@torch.no_grad()
def evaluate_model(
    accelerator: Accelerator,
    model: torch.nn.Module,
    loader,
    to_model: Callable[[dict], torch.Tensor],
    labels: LabelInfo,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics over every eval image exactly once (``gather_for_metrics`` drops the padding of uneven shards);
    ``to_model`` turns a batch into the model's input (``data.ModelInputs``).

    Returns (metrics with loss/auc/accuracy[/auc_per_label or auc_per_class]/num_samples, predictions with
    ``index`` (N,), ``scores`` (N, C), ``labels`` (N,) or (N, K)).
    """
    model.eval()
    metric = classification_metrics(multilabel=labels.multilabel)
    indices, all_scores, all_labels, loss_sum = [], [], [], 0.0
    for batch in loader:
        logits = model(to_model(batch)).float()
        loss = (
            torch.nn.functional.cross_entropy(logits, batch["label"], reduction="none")
            if not labels.multilabel
            else (
                torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, batch["label"].float(), reduction="none"
                ).mean(1)
            )
        )
        scores = scores_from_logits(logits, labels.multilabel)
        index, scores, label, loss = accelerator.gather_for_metrics(
            (batch["index"], scores, batch["label"], loss)
        )
        metric.add_batch(predictions=scores.cpu().numpy(), references=label.cpu().numpy())
        indices.append(index.cpu())
        all_scores.append(scores.cpu())
        all_labels.append(label.cpu())
        loss_sum += loss.sum().item()
    model.train()
    results = metric.compute()
    count = sum(len(i) for i in indices)
    metrics = {"loss": loss_sum / max(count, 1), "auc": results.pop("roc_auc"), "num_samples": count}
    metrics.update({k.replace("roc_auc", "auc"): v for k, v in results.items()})
    predictions = {
        "index": torch.cat(indices).numpy(),
        "scores": torch.cat(all_scores).numpy(),
        "labels": torch.cat(all_labels).numpy(),
    }
    return metrics, predictions
