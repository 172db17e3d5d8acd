"""The `transfusion` command's own layer: subcommands and the initializer listing."""

from __future__ import annotations

import pytest

from timm_transfusion import list_inits
from timm_transfusion.cli import build_parser, main


def test_inits_lists_every_registered_initializer(capsys):
    assert main(["inits"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(list_inits())


def test_every_documented_subcommand_is_there(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    usage = capsys.readouterr().out
    for command in ("inits", "train", "experiment", "cca", "card", "push"):
        assert f"    {command}" in usage
