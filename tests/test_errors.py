"""`TransfusionError` is the base of every error the package raises on purpose; the CLI's exit codes follow it."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import timm_transfusion
from timm_transfusion import TransfusionError
from timm_transfusion.cli import main

PACKAGE = Path(timm_transfusion.__file__).parent
MODULE_NAMES = sorted(
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
)


def raised_names(module_name: str) -> list[str]:
    """Names of the classes a module's ``raise Name(...)`` statements construct (a module ``__getattr__``'s
    AttributeError is Python's protocol, not an error of the package)."""
    module = importlib.import_module(module_name)
    tree = ast.parse(Path(inspect.getfile(module)).read_text(encoding="utf-8"))
    protocol = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
        for node in ast.walk(function)
    }
    return [
        node.exc.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and isinstance(node.exc.func, ast.Name)
        and id(node) not in protocol
    ]


@pytest.mark.parametrize("module_name", MODULE_NAMES)
def test_every_deliberate_raise_is_a_transfusion_error(module_name):
    module = importlib.import_module(module_name)
    for name in raised_names(module_name):
        cls = getattr(module, name)
        if not issubclass(
            cls, Exception
        ):  # an interrupt (KeyboardInterrupt subclass) is a signal, not an error
            continue
        assert issubclass(cls, TransfusionError), f"{module_name} raises {name}, not a TransfusionError"


def test_the_scan_finds_raises():
    assert "SourceError" in raised_names("timm_transfusion.init.source")


def test_every_package_exception_is_a_transfusion_error_and_keeps_its_standard_base():
    classes = {
        cls
        for name in MODULE_NAMES
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass)
        if issubclass(cls, Exception) and not issubclass(cls, Warning) and cls.__module__.startswith(name)
    }
    assert len(classes) > 20
    assert all(issubclass(cls, TransfusionError) for cls in classes), [
        cls.__name__ for cls in classes if not issubclass(cls, TransfusionError)
    ]
    standard = (ValueError, RuntimeError, KeyError, TypeError, OSError)
    assert all(issubclass(cls, standard) for cls in classes - {TransfusionError})


def test_a_user_error_exits_2_with_one_line(tmp_path, capsys):
    assert main(["card", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transfusion card: error:") and err.count("\n") == 1


def test_an_unexpected_error_is_not_dressed_up_as_a_user_error(monkeypatch, tmp_path):
    from timm_transfusion import hub

    def out_of_memory(*_args, **_kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(hub, "write_card", out_of_memory)
    with pytest.raises(MemoryError):
        main(["card", str(tmp_path)])


def test_bad_usage_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        main(["cca"])
    assert exit_info.value.code == 2
