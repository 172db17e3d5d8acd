"""The `rescaled` init (timm's random init at the source's scale) and the per-layer weight-scale table."""

from __future__ import annotations

import timm
import torch
from PIL import Image
from safetensors.torch import load_file

import timm_transfusion  # noqa: F401  (registers the inits and models)
from timm_transfusion.init.rescaled import rescale_to
from timm_transfusion.init.sampling import norm_keys
from timm_transfusion.init.scales import log_ratio_summary, scale_table, weight_scales
from timm_transfusion.viz.weight_scale import plot_weight_scales


def _std(tensor: torch.Tensor) -> float:
    return float(tensor.double().std(correction=0))


def test_rescaled_matches_the_source_std_per_tensor_with_the_random_draws(mobilenet_weights):
    source = load_file(mobilenet_weights)
    model = timm.create_model(
        "mobilenetv1_025", init="rescaled", init_source=str(mobilenet_weights), init_seed=3
    )
    random = timm.create_model("mobilenetv1_025", init="random", init_seed=3).state_dict()
    norms = norm_keys(model)
    checked = 0
    for key, value in model.state_dict().items():
        if value.ndim < 2 or key in norms:
            continue
        assert abs(_std(value) - _std(source[key])) < 1e-5 * _std(source[key]), key
        # the same random draws: a positive multiple of random's centred values
        centred, reference = value - value.mean(), random[key] - random[key].mean()
        cosine = torch.nn.functional.cosine_similarity(centred.flatten(), reference.flatten(), dim=0)
        assert cosine > 1 - 1e-5, key
        checked += 1
    assert checked == 28  # stem, 13 depthwise + 13 pointwise convs, the classifier (1000-way like the source)


def test_rescaled_keeps_norm_layers_and_a_head_of_another_shape_random(mobilenet_weights):
    model = timm.create_model(
        "mobilenetv1_025", init="rescaled", init_source=str(mobilenet_weights), init_seed=0, num_classes=5
    )
    random = timm.create_model("mobilenetv1_025", init="random", init_seed=0, num_classes=5).state_dict()
    state = model.state_dict()
    for key in norm_keys(model) | {"classifier.weight", "classifier.bias"}:
        torch.testing.assert_close(state[key], random[key])


def test_channel_stats_match_each_output_channel():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(4, 3, 3, 3, generator=generator)
    reference = torch.randn(4, 3, 3, 3, generator=generator) * torch.tensor([0.1, 1.0, 3.0, 0.01]).view(
        4, 1, 1, 1
    )
    out = rescale_to(values, reference, stats="channel")
    for channel in range(4):
        assert abs(_std(out[channel]) - _std(reference[channel])) < 1e-6


def test_mean_option_moves_each_tensor_to_the_source_mean_too():
    generator = torch.Generator().manual_seed(4)
    values, reference = (
        torch.randn(64, 8, generator=generator),
        0.3 + 0.1 * torch.randn(64, 8, generator=generator),
    )
    out = rescale_to(values, reference, mean=True)
    assert abs(float(out.double().mean() - reference.double().mean())) < 1e-6
    assert abs(_std(out) - _std(reference)) < 1e-6
    assert abs(float(rescale_to(values, reference).double().mean() - values.double().mean())) < 1e-6


def test_constant_tensors_are_left_as_they_are():
    values = torch.zeros(8)
    assert torch.equal(rescale_to(values, torch.randn(8)), values)


def test_weight_scales_on_real_weights_show_source_random_and_meanvar(mobilenet_weights, tmp_path):
    model = timm.create_model("mobilenetv1_025", num_classes=1000)
    scales = weight_scales(model, str(mobilenet_weights), seed=0)
    source = load_file(mobilenet_weights)
    assert len(scales) == 28  # 27 convs and the classifier
    for scale in scales:
        assert abs(scale.std["pretrained"] - _std(source[scale.key])) < 1e-6
        assert abs(scale.ratio("rescaled") - 1) < 1e-4
        assert abs(scale.ratio("meanvar") - 1) < 0.2  # a sample of the source's variance
    summary = log_ratio_summary(scales, "random")
    assert summary["tensors"] == 28 and len(summary["log2_ratios"]) == 28
    assert summary["min_ratio"] <= summary["geometric_mean_ratio"] <= summary["max_ratio"]
    lines = scale_table(scales)
    assert lines[0].startswith("| tensor | shape | std pretrained | std random")
    assert len(lines) == 2 + len(scales)
    path = plot_weight_scales(scales, tmp_path / "weight_scale.png")
    with Image.open(path) as image:
        assert image.size[0] > 600


def test_weight_scales_leave_the_model_unchanged():
    model = timm.create_model("cbr_tiny", num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight_scales(model, {k: v * 2 for k, v in before.items()}, inits=("pretrained", "random"))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
