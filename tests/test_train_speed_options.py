"""--channels-last and --compile: the same training as the default, and a clear message where compiling fails."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from timm_transfusion.train import TrainConfig, TrainConfigError, read_jsonl, train
from timm_transfusion.train.faults import CompileError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(output, **options) -> TrainConfig:
    return TrainConfig(
        model="test_resnet",
        dataset="synthetic:fundus:train=32,val=16",
        output=str(output),
        img_size=32,
        batch_size=8,
        max_steps=4,
        eval_every=2,
        eval_log_start=0,
        opt="sgd",
        lr=0.05,
        progress=False,
        log_with="none",
        **options,
    )


def losses(folder) -> list[float]:
    return [record["train_loss"] for record in read_jsonl(folder / "metrics.jsonl")]


def test_channels_last_trains_the_same_model(tmp_path, monkeypatch):
    formats = []
    original = torch.nn.Conv2d.forward

    def seen(self, x):
        if len(x) == 8 and x.shape[-1] * x.shape[-2] > 1:  # batches, not the size check; 1x1 maps are both
            formats.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", seen)
    train(config(tmp_path / "channels_last", channels_last=True))
    assert formats and all(formats)  # every convolution got channels-last input
    formats.clear()
    train(config(tmp_path / "default"))
    assert formats and not any(formats)
    assert losses(tmp_path / "channels_last") == pytest.approx(losses(tmp_path / "default"), rel=1e-4)


def test_compile_unavailable_is_refused_before_any_write(tmp_path, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on Python 3.99+")

    monkeypatch.setattr(torch, "compile", unsupported)
    with pytest.raises(
        TrainConfigError, match=r"--compile: torch.compile is not available here .*Python 3\.99"
    ):
        train(config(tmp_path / "run", compile=True))
    assert not (tmp_path / "run").exists()


def test_a_model_that_fails_to_compile_names_the_flag(tmp_path, monkeypatch):
    from torch._dynamo.exc import TorchDynamoException

    def failing_compile(self, *args, **kwargs):
        def forward(*inputs, **kw):
            raise TorchDynamoException("graph break in a custom op\nmore detail")

        self.forward = forward

    monkeypatch.setattr(torch.nn.Module, "compile", failing_compile)
    with pytest.raises(
        CompileError, match=r"--compile: training test_resnet failed inside torch.compile .*graph break"
    ):
        train(config(tmp_path / "run", compile=True))


@pytest.mark.slow
def test_compiled_training_matches_eager_and_resumes_without_compile(tmp_path):
    """Compiled in place: the losses of eager training, and checkpoints an uncompiled run resumes from."""
    compiled = train(config(tmp_path / "compiled", compile=True, checkpoint_every=2, keep_checkpoints=0))
    eager = train(config(tmp_path / "eager"))
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-3)
    weights = load_file(tmp_path / "compiled" / "model.safetensors")
    assert weights.keys() == load_file(tmp_path / "eager" / "model.safetensors").keys()
    assert compiled["steps"] == eager["steps"] == 4
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "compiled", resumed)
    (resumed / "summary.json").unlink()
    shutil.rmtree(resumed / "checkpoints" / "step_00000004")
    summary = train(config(resumed, checkpoint_every=2, keep_checkpoints=0, resume=True))
    assert summary["steps"] == 4
    assert losses(resumed) == pytest.approx(losses(tmp_path / "compiled"), rel=1e-3)
