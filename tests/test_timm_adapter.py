"""timm's private APIs: used only through timm_transfusion/_timm.py, within the version range pyproject allows."""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import timm
import tomllib
import torch
from packaging.requirements import Requirement

from timm_transfusion import _timm

ROOT = Path(__file__).resolve().parents[1]


def timm_requirement() -> Requirement:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in dependencies if Requirement(d).name == "timm")


def test_pyproject_bounds_timm_above_and_the_installed_timm_is_inside():
    requirement = timm_requirement()
    assert any(spec.operator == "<" for spec in requirement.specifier), requirement
    assert requirement.specifier.contains(version("timm")), (str(requirement), version("timm"))


def private_timm_imports(path: Path) -> list[str]:
    """Dotted names a module imports from timm with a private (``_``) part, e.g. ``timm.models._registry``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    ]
    return [
        name
        for name in names
        if name.split(".")[0] == "timm" and any(part.startswith("_") for part in name.split("."))
    ]


def test_private_timm_names_are_imported_only_by_the_adapter():
    package = ROOT / "timm_transfusion"
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in package.rglob("*.py")
        if path.name != "_timm.py" and (found := private_timm_imports(path))
    }
    assert offenders == {}
    assert private_timm_imports(package / "_timm.py")  # the scan sees them where they are


def test_each_private_name_still_does_what_the_adapter_relies_on():
    model = timm.create_model("resnet18")
    keys = list(model.state_dict())
    group_of = _timm.group_with_matcher(
        ((key, None) for key in keys), model.group_matcher(coarse=True), reverse=True
    )
    assert set(group_of) == set(keys) and group_of["bn1.running_mean"] == 0  # every key, buffers too
    assert group_of["fc.weight"] == max(group_of.values()) > group_of["layer1.0.conv1.weight"] > 0
    indices, max_index = _timm.feature_take_indices(5, [-1])
    assert list(indices) == [4] and max_index == 4
    cfg = _timm.pretrained_cfg_for_features(model.pretrained_cfg)
    assert "classifier" not in cfg and cfg["architecture"] == "resnet18"
    net = _timm._gen_mobilenet_v1("mobilenetv1_025", 0.25, act_layer="relu")
    assert net.conv_stem.out_channels == 8
    table = _timm.entrypoint_table()
    assert (
        table["resnet18"] is timm.models.resnet.resnet18
        or table["resnet18"].fn is timm.models.resnet.resnet18
    )
    assert "resnet18" in table


def test_drop_model_args_removes_only_the_named_keys():
    model = torch.nn.Linear(1, 1)
    model._model_args = {"init": "meanvar", "num_classes": 3}
    _timm.drop_model_args(model, ["init"])
    assert model._model_args == {"num_classes": 3}
