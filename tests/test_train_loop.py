"""The training loop's steps keep the loss on the device: no host sync (``Tensor.item``) per batch."""

from __future__ import annotations

import pytest
import torch

from timm_transfusion.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def item_calls(monkeypatch, output, max_steps: int) -> int:
    """``Tensor.item`` calls during a run with one evaluation (at the end) and SGD (no optimizer-side syncs).

    The DataLoader's sampler draws its seed with one ``item()`` per epoch, so both runs stay in one epoch.
    """
    calls = []
    original = torch.Tensor.item

    def counted(self):
        calls.append(1)
        return original(self)

    config = TrainConfig(
        model="test_resnet",
        dataset="synthetic:fundus:train=64,val=16",  # 8 batches: both runs stay in epoch 0
        output=str(output),
        batch_size=8,
        max_steps=max_steps,
        eval_every=max_steps,
        opt="sgd",
        progress=False,
        log_with="none",
    )
    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "item", counted)
        summary = train(config)
    assert summary["steps"] == max_steps
    return len(calls)


def test_more_training_steps_add_no_host_syncs(tmp_path, monkeypatch):
    short = item_calls(monkeypatch, tmp_path / "short", max_steps=2)
    long = item_calls(monkeypatch, tmp_path / "long", max_steps=8)
    assert short > 0  # the evaluation and the final loss read do sync: the counter sees them
    assert long == short
