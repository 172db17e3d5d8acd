"""The zoo sweep (benchmarks/zoo_sweep.py) on a fixed sample of 19 diverse timm families, built small:
every check passes, or is refused with the documented error where the model lacks a group_matcher."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "zoo_sweep", Path(__file__).resolve().parents[1] / "benchmarks" / "zoo_sweep.py"
)
zoo_sweep = importlib.util.module_from_spec(_SPEC)
sys.modules["zoo_sweep"] = zoo_sweep  # dataclasses look their module up there
_SPEC.loader.exec_module(zoo_sweep)

SMALL_VIT = {"img_size": 32, "depth": 2}
# (model, kwargs, input size): CNNs, ViTs with prefix tokens, hybrids, channels-last, MLP-mixer, …
SAMPLE = [
    ("test_resnet", {}, 32),  # CNN, BatchNorm
    ("cbr_tiny", {}, 32),  # the paper's CBR family (this plugin)
    ("mobilenetv3_small_050", {}, 32),  # depthwise CNN with squeeze-excite
    ("regnetx_002", {}, 32),
    ("test_efficientnet_evos", {}, 32),  # EvoNorm2dS0
    ("test_nfnet", {}, 32),  # norm-free, scaled weight standardization
    ("test_byobnet", {}, 32),
    ("convnextv2_atto", {}, 32),  # GlobalResponseNorm
    ("test_vit", {"img_size": 32}, 32),  # ViT with a cls token
    ("deit_tiny_distilled_patch16_224", SMALL_VIT, 32),  # two prefix tokens, two heads
    ("test_vit_relpos", {"img_size": 32}, 32),
    ("xcit_nano_12_p16_224", SMALL_VIT, 32),  # patch embedding returns (x, grid)
    ("vit_tiny_r_s16_p8_224", {"img_size": 32}, 32),  # hybrid: ResNet stem + ViT
    ("test_coatnet", {"img_size": 32}, 32),  # hybrid conv/attention (maxxvit)
    ("coat_lite_tiny", {"img_size": 32}, 32),  # tensors shared across block groups
    ("test_mambaout", {}, 32),  # channels-last (NHWC) stages
    ("mixer_s32_224", {"img_size": 64}, 64),  # MLP-mixer
    ("pit_ti_224", {"img_size": 64}, 64),  # no group_matcher: transfusion-k refuses
    ("levit_128s", {"img_size": 64}, 64),  # conv + BN attention, distilled head
]
NO_GROUP_MATCHER = {"pit_ti_224"}


def test_the_sample_spans_at_least_15_modules():
    assert len({zoo_sweep.module_of(name) for name, _, _ in SAMPLE}) >= 15


@pytest.mark.parametrize(("name", "kwargs", "size"), SAMPLE, ids=[name for name, _, _ in SAMPLE])
def test_every_check_passes_or_refuses_as_documented(name, kwargs, size):
    result = zoo_sweep.check_model(name, kwargs=kwargs, size=(size, size))
    assert set(result.checks) == set(zoo_sweep.CHECKS)
    expected_refusals = {"transfusion": "refused GroupMatcherError"} if name in NO_GROUP_MATCHER else {}
    for check, outcome in result.checks.items():
        if check in expected_refusals:
            assert outcome == expected_refusals[check], f"{check}: {outcome}"
        else:
            assert outcome.startswith("ok"), f"{check}: {outcome}"
    assert result.passed


def test_a_failing_check_is_recorded_with_its_error_type_and_first_line(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(zoo_sweep, "check_pretrained", broken)
    result = zoo_sweep.check_model("test_resnet", kwargs={}, size=(32, 32))
    assert result.checks["pretrained"] == "FAIL RuntimeError: first line"
    assert result.checks["meanvar"].startswith("ok") and not result.passed
    assert "FAIL RuntimeError: first line" in zoo_sweep.markdown_table([result])
    assert zoo_sweep.coverage([result])["pretrained"] == {"ok": 0, "refused": 0, "failed": 1}
