"""Regressions found by the zoo sweep, each on the real timm model built small: Mean Var statistics of
100 M-element tensors, tensors shared across block groups (coat), rdnet's missing coarse grouping, and
compare() on tresnet, xcit and naflexvit."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch

from timm_transfusion import similarity
from timm_transfusion._timm import group_with_matcher
from timm_transfusion.init import block_groups
from timm_transfusion.init.groups import TiedTensorWarning, tied_keys
from timm_transfusion.init.sampling import mean_std
from timm_transfusion.similarity import LayerCapture, compare, default_layers

# Mean Var statistics in float64


def _chunked_reference(values: torch.Tensor) -> tuple[float, float]:
    """Mean and population variance merged from float64 slices (Chan et al.), independent of mean_std."""
    count, mean, m2 = 0, 0.0, 0.0
    for part in values.split(1 << 23):
        part = part.double()
        n, part_mean = part.numel(), part.mean().item()
        part_m2 = ((part - part_mean) ** 2).sum().item()
        delta = part_mean - mean
        mean += delta * n / (count + n)
        m2 += part_m2 + delta * delta * count * n / (count + n)
        count += n
    return mean, m2 / count


def _peak_rss_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def test_meanvar_statistics_of_a_vgg11_fc1_sized_tensor_are_float64_exact_without_copies():
    n = 25088 * 4096  # vgg11's pre_logits.fc1.weight: 102.8 M elements, where float32 sums were 2 % off
    values = torch.empty(n).normal_(0.01, 0.02, generator=torch.Generator().manual_seed(0))
    expected_mean, expected_var = _chunked_reference(values)
    with open("/proc/self/clear_refs", "w") as refs:  # reset the peak resident size to the current one
        refs.write("5")
    before = _peak_rss_bytes()
    mean, std = mean_std(values.view(1, -1))
    extra = _peak_rss_bytes() - before
    assert mean.dtype == std.dtype == torch.float64
    assert mean.item() == pytest.approx(expected_mean, rel=1e-9)
    assert std.item() ** 2 == pytest.approx(expected_var, rel=1e-9)
    assert extra < values.nbytes / 4, (
        f"{extra / 2**20:.0f} MiB extra for a {values.nbytes / 2**20:.0f} MiB tensor"
    )


@pytest.mark.parametrize("shape", [(7, 1000), (7, 1_000_001)], ids=["one block", "merged blocks"])
def test_per_channel_statistics_match_torch_in_float64(shape):
    rows = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 3 + 100
    mean, std = mean_std(rows)
    expected_std, expected_mean = torch.std_mean(rows.double(), dim=1, correction=0)
    torch.testing.assert_close(mean, expected_mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(std, expected_std, rtol=1e-10, atol=0)


# Tensors shared across block groups: coat's cpe/crpe


def _source(name: str, **kwargs) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(5)
        source = timm.create_model(name, **kwargs)
    with torch.no_grad():
        for tensor in source.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                tensor.add_(1.0)
    return source


def test_coat_shares_tensors_across_block_groups():
    model = timm.create_model("coat_lite_tiny")
    raw = group_with_matcher(
        ((key, None) for key in model.state_dict()), model.group_matcher(True), reverse=True
    )
    spanning = [keys for keys in tied_keys(model) if len({raw[key] for key in keys}) > 1]
    assert spanning and any(key.startswith("cpe1.") for keys in spanning for key in keys)


def test_a_tensor_shared_across_groups_belongs_to_the_lowest_with_one_warning():
    model = timm.create_model("coat_lite_tiny")
    raw = group_with_matcher(
        ((key, None) for key in model.state_dict()), model.group_matcher(True), reverse=True
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        groups = block_groups(model)
    tied = [str(w.message) for w in caught if issubclass(w.category, TiedTensorWarning)]
    assert len(tied) == 1 and "lowest group" in tied[0]
    for keys in tied_keys(model):
        assert {groups.group_of[key] for key in keys} == {min(raw[key] for key in keys)}


def test_transfusion_0_on_coat_copies_the_stem_tensors_its_serial_blocks_share():
    source = _source("coat_lite_tiny", num_classes=5)
    with pytest.warns(TiedTensorWarning):
        model = timm.create_model(
            "coat_lite_tiny", num_classes=5, init="transfusion-0", init_source=source, init_seed=0
        )
    random = timm.create_model("coat_lite_tiny", num_classes=5, init="random", init_seed=0).state_dict()
    state, expected = model.state_dict(), source.state_dict()
    for key in ("cpe1.proj.weight", "serial_blocks1.0.cpe.proj.weight"):
        assert torch.equal(state[key], expected[key]), key
        assert not torch.equal(state[key], random[key])
    assert torch.equal(
        state["serial_blocks1.0.factoratt_crpe.qkv.weight"],
        random["serial_blocks1.0.factoratt_crpe.qkv.weight"],
    )


def test_meanvar_gives_a_shared_tensor_one_value_under_all_its_names():
    model = timm.create_model(
        "coat_lite_tiny", init="meanvar", init_source=_source("coat_lite_tiny"), init_seed=0
    )
    state = model.state_dict()
    for keys in tied_keys(model):
        assert all(torch.equal(state[key], state[keys[0]]) for key in keys)


# rdnet: no coarse grouping in timm, so its fine grouping (one group per dense stage) is used


def test_rdnet_is_grouped_by_its_dense_stages():
    model = timm.create_model("rdnet_tiny", num_classes=5)
    with pytest.raises(AssertionError):
        model.group_matcher(coarse=True)
    groups = block_groups(model)
    assert groups.num_blocks == len(model.dense_stages)
    assert all(groups.group_of[key] == 0 for key in model.state_dict() if key.startswith("stem."))
    assert {groups.group_of[key] for key in model.state_dict() if key.startswith("dense_stages.2.")} == {3}


def test_transfusion_2_on_rdnet_copies_the_stem_and_two_dense_stages():
    source = _source("rdnet_tiny", num_classes=5)
    model = timm.create_model(
        "rdnet_tiny", num_classes=5, init="transfusion-2", init_source=source, init_seed=0
    )
    random = timm.create_model("rdnet_tiny", num_classes=5, init="random", init_seed=0).state_dict()
    lower = ("stem.", "dense_stages.0.", "dense_stages.1.")
    for key, value in model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key] if key.startswith(lower) else random[key]), key


def test_rdnet_default_layers_and_wrong_layer_message_need_no_coarse_grouping():
    model = timm.create_model("rdnet_tiny", num_classes=5)
    assert default_layers(model)[:2] == ["stem", "dense_stages.0"]
    with pytest.raises(similarity.LayerError, match="no layer 'nope'.*dense_stages.0"):
        LayerCapture(model, ["nope"])


# compare() on tresnet (space-to-depth stem), xcit and naflexvit ((x, grid) patch embeddings)


def _images(size: int, channels: int = 3, batch: int = 4) -> list[torch.Tensor]:
    return [torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))]


def test_compare_feeds_tresnet_three_channel_images_and_checks_its_in_chans():
    model = timm.create_model("tresnet_m", num_classes=5)
    assert model.get_submodule(model.pretrained_cfg["first_conv"]).in_channels == 48
    report = compare(model, model, _images(64), metrics="linear_cka", max_positions=4)
    assert report.layers and all(entry.values["linear_cka"] is not None for entry in report.layers)
    gray = timm.create_model("tresnet_m", num_classes=5, in_chans=1)
    with pytest.raises(similarity.SimilarityOptionError, match="3 channels but .* expects 1"):
        compare(gray, gray, _images(64), metrics="linear_cka")


def test_compare_runs_xcit_whose_patch_embedding_returns_its_grid():
    model = timm.create_model("xcit_nano_12_p16_224", img_size=64, num_classes=5)
    assert "stem" in default_layers(model)
    report = compare(model, model, _images(64), metrics="linear_cka", max_positions=4)
    stem = next(entry for entry in report.layers if entry.layer_a == "stem")
    assert stem.features_a == model.embed_dim and stem.values["linear_cka"] == pytest.approx(1.0)


def test_naflexvit_stem_is_its_patch_tokens_without_prefix_tokens():
    model = timm.create_model("naflexvit_base_patch16_gap", depth=1, num_classes=5).eval()
    assert "stem" in default_layers(model) and model.num_prefix_tokens > 0
    captured = LayerCapture(model, ["stem", "blocks.0"])(_images(64)[0])
    assert captured["stem"].shape == (4, 16, model.embed_dim)
    report = compare(model, model, _images(64), metrics="linear_cka", max_positions=4)
    assert [entry.layer_a for entry in report.layers] == default_layers(model)
