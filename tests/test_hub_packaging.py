"""The card templates in the top-level hub_cards/ ship as ``timm_transfusion.hub_cards``
(editable install and wheel)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from timm_transfusion.hub.card import TEMPLATE, template_text

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_finds_the_card_template() -> None:
    assert template_text() == (ROOT / "hub_cards" / TEMPLATE).read_text(encoding="utf-8")


def test_pyproject_lists_every_package_folder() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"timm_transfusion.hub_cards": "hub_cards"}
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "timm_transfusion").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = folders - set(config["packages"])
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


@pytest.mark.slow
def test_built_wheel_contains_and_finds_the_templates(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    for folder in ("timm_transfusion", "hub_cards"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    build = "from setuptools import build_meta; print(build_meta.build_wheel(r'%s'))" % (tmp_path / "dist")
    proc = subprocess.run(
        [sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    wheel = tmp_path / "dist" / proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        assert f"timm_transfusion/hub_cards/{TEMPLATE}" in archive.namelist()
    # Imported straight from the zipped wheel (zipimport): the template must be read, not opened as a path.
    check = (
        "import timm_transfusion; from timm_transfusion.hub.card import template_text; "
        "print(timm_transfusion.__file__); print(template_text(), end='')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check],
        env={"PYTHONPATH": str(wheel), "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    location, text = proc.stdout.split("\n", 1)
    assert location.startswith(str(wheel))
    assert text == (ROOT / "hub_cards" / TEMPLATE).read_text(encoding="utf-8")
