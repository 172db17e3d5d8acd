"""Bad inputs and faults: one clear line, the right exit status, and nothing left behind (issue 16).

Every row of ``reliability_cases.CASES`` runs through the real CLI in process. The fault tests below train a
small run and break it (corrupt checkpoints, Ctrl-C, resuming finished or empty runs). The last test checks
that README.md's reliability table lists every case with a matching message; with
``TRANSFUSION_WRITE_README=1`` it rewrites that table from the messages seen in this session.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reliability_cases import CASES, TRAIN, Case
from safetensors.torch import load_file

from timm_transfusion.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
# (what the README shows as input, the regex its line must match): faults, filled by the tests below
FAULTS = {
    "train --resume, newest checkpoint truncated": r"warning: checkpoint .*step_00000004 cannot be loaded .*"
    r"trying the next older one",
    "train --resume, newest checkpoint lacks optimizer.bin": r"warning: checkpoint .*step_00000004 cannot be "
    r"loaded \(FileNotFoundError.*optimizer\.bin",
    "train --resume, every checkpoint corrupt": r"--resume: no checkpoint in .* can be loaded .* pass --overwrite",
    "train --resume on a finished run": r"--resume: .* is already complete \(step 4\); nothing to do",
    "train --resume, run without checkpoints": r"--resume: .* has no checkpoint \(--checkpoint-every 0 saves "
    r"none\); starting this run over at step 0",
    "train --resume into a new folder": r"--resume: nothing to resume in .*; starting a new run",
    "Ctrl-C during training": r"^interrupted at step \d+; rerun the same command with --resume to continue from "
    r"step_\d{8}$",
    "train --img-size 16 (test_resnet downsamples 32x)": r"16x16 images are smaller than test_resnet's total "
    r"stride 32",
    "train --init meanvar, offline, test_resnet's weights not cached": r"could not load pretrained weights for "
    r"'test_resnet': the Hub \(.*\) cannot be reached and they are not in the local cache",
}
SEEN: dict[str, tuple[str, int]] = {}  # shown input -> (answer line with the tmp folder as TMP, exit status)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time: any write changes it."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit:  # argparse's own usage errors
        return exit.code


def answer_line(text: str, pattern: str) -> str:
    """The line of ``text`` matching ``pattern`` (the test fails when none does)."""
    lines = [line for line in text.splitlines() if re.search(pattern, line)]
    assert lines, f"no line matches {pattern!r} in:\n{text}"
    return lines[-1]


def record(shown: str, line: str, status: int, tmp: Path) -> None:
    SEEN[shown] = (line.replace(str(tmp), "TMP"), status)


@pytest.mark.parametrize("case", CASES, ids=[case.shown for case in CASES])
def test_bad_input_gets_one_line_and_leaves_nothing_behind(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.cpu_only and torch.cuda.is_available():
        pytest.skip("valid on a machine with a GPU")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if case.setup:
        case.setup(tmp_path)
    capsys.readouterr()
    before = tree(tmp_path)
    status = run_cli(case.argv(tmp_path))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and re.search(case.message, lines[-1]), err
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), f"more than one line:\n{err}"
    assert status == case.status
    assert tree(tmp_path) == before, "the command wrote, changed or deleted files before refusing"
    record(case.shown, lines[-1], status, tmp_path)


# -- faults -----------------------------------------------------------------------------------------------
CHECKPOINTED = [*TRAIN.split(), "--max-steps", "4", "--checkpoint-every", "2", "--keep-checkpoints", "0"]


def argv_for(words: list[str], out: Path, *extra: str) -> list[str]:
    return [w.format(out=out, tmp=out.parent) for w in words] + list(extra)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run with checkpoints at steps 2 and 4 (the final step), on one thread like the tests that
    resume it (a module fixture is set up before the function-scoped ``one_torch_thread``)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv_for(CHECKPOINTED, out)) == 0
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    return out


def interrupted_copy(finished: Path, tmp: Path) -> Path:
    """The finished run as if killed after its last checkpoint: no summary, no exported weights."""
    out = tmp / "out"
    shutil.copytree(finished, out)
    for name in ("summary.json", "model.safetensors", "config.json"):
        (out / name).unlink()
    return out


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_checkpoint_files_are_readable_like_every_other_file(finished_run: Path) -> None:
    modes = {
        p.name: p.stat().st_mode & 0o777 for p in (finished_run / "checkpoints").rglob("*") if p.is_file()
    }
    expected = finished_run.joinpath("summary.json").stat().st_mode & 0o777
    assert set(modes.values()) == {expected}, modes


@pytest.mark.parametrize("damage", ["truncated", "lacks optimizer.bin"])
def test_corrupt_newest_checkpoint_warns_and_falls_back_to_the_older_one(
    damage: str, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = interrupted_copy(finished_run, tmp_path)
    newest = out / "checkpoints" / "step_00000004"
    if damage == "truncated":
        os.truncate(newest / "model.safetensors", 100)
    else:
        (newest / "optimizer.bin").unlink()
    capsys.readouterr()
    assert main(argv_for(CHECKPOINTED, out, "--resume")) == 0
    printed = capsys.readouterr().out
    shown = (
        f"train --resume, newest checkpoint {'truncated' if damage == 'truncated' else 'lacks optimizer.bin'}"
    )
    record(shown, answer_line(printed, FAULTS[shown]), 0, tmp_path)
    assert "resumed" in printed and "from step_00000002 (step 2)" in printed
    assert same_weights(out, finished_run), "training on from the older checkpoint must end where the run did"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]


def test_every_checkpoint_corrupt_is_one_line_and_exit_1(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = interrupted_copy(finished_run, tmp_path)
    for checkpoint in (out / "checkpoints").iterdir():
        os.truncate(checkpoint / "model.safetensors", 10)
    before = tree(out)
    capsys.readouterr()
    assert main(argv_for(CHECKPOINTED, out, "--resume")) == 1
    shown = "train --resume, every checkpoint corrupt"
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    record(shown, answer_line(err, FAULTS[shown]), 1, tmp_path)
    assert {k for k in tree(out) if k.startswith("checkpoints")} == {
        k for k in before if k.startswith("checkpoints")
    }


def test_resume_on_a_finished_run_says_so_and_changes_nothing(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    before = tree(out)
    capsys.readouterr()
    assert main(argv_for(CHECKPOINTED, out, "--resume")) == 0
    shown = "train --resume on a finished run"
    record(shown, answer_line(capsys.readouterr().out, FAULTS[shown]), 0, tmp_path)
    assert tree(out) == before


def test_resume_without_checkpoints_says_it_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    words = [*TRAIN.split(), "--max-steps", "1"]
    assert main(argv_for(words, out)) == 0
    (out / "summary.json").unlink()  # as if killed before the export
    capsys.readouterr()
    assert main(argv_for(words, out, "--resume")) == 0
    shown = "train --resume, run without checkpoints"
    record(shown, answer_line(capsys.readouterr().out, FAULTS[shown]), 0, tmp_path)
    assert (out / "summary.json").is_file()


def test_resume_into_a_new_folder_says_it_starts_a_new_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert main(argv_for([*TRAIN.split(), "--max-steps", "1"], out, "--resume")) == 0
    shown = "train --resume into a new folder"
    record(shown, answer_line(capsys.readouterr().out, FAULTS[shown]), 0, tmp_path)


def test_small_images_for_the_model_stride_get_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from timm_transfusion.models.checks import SmallImageWarning

    with pytest.warns(SmallImageWarning) as warned:
        assert main(argv_for([*TRAIN.split(), "--max-steps", "1", "--img-size", "16"], tmp_path / "out")) == 0
    shown = "train --img-size 16 (test_resnet downsamples 32x)"
    record(shown, answer_line(str(warned[0].message), FAULTS[shown]), 0, tmp_path)


def test_offline_default_source_fails_at_once_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from timm_transfusion.init import source

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(source, "hub_reachable", lambda: False)
    requests = []
    resolve = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *args, **kw: requests.append(args) or resolve(*args, **kw)
    )
    assert main(argv_for([*TRAIN.split(), "--init", "meanvar"], tmp_path / "out")) == 2
    shown = "train --init meanvar, offline, test_resnet's weights not cached"
    record(shown, answer_line(capsys.readouterr().err, FAULTS[shown]), 2, tmp_path)
    assert requests == [], "an unreachable Hub must not be asked (each request retries for a minute)"
    assert constants.HF_HUB_OFFLINE is False, "the offline switch is restored"
    assert not (tmp_path / "out").exists()


def test_ctrl_c_prints_the_step_and_how_to_continue_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "out"
    words = argv_for([*TRAIN.split(), "--max-steps", "100000", "--checkpoint-every", "2"], out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "timm_transfusion.cli", *words],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list((out / "checkpoints").glob("step_*")) and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "Traceback" not in err and err.count("\n") == 1, err
    shown = "Ctrl-C during training"
    line = answer_line(err, FAULTS[shown])
    step, named = re.search(r"step (\d+);.*from (step_\d+)", line).groups()
    newest = sorted(p.name for p in (out / "checkpoints").glob("step_*"))[-1]
    assert named == newest and int(named.removeprefix("step_")) <= int(step)
    record(shown, line, 130, tmp_path)


# -- the README table, generated from the cases above -----------------------------------------------------
def render_table() -> str:
    rows = ["| input | answer (one line) | exit |", "| --- | --- | ---: |"]
    for shown in [case.shown for case in CASES] + list(FAULTS):
        line, status = SEEN[shown]
        rows.append(f"| `{shown}` | {line.replace('|', '&#124;')} | {status} |")
    return "\n".join(rows)


def readme_rows() -> dict[str, tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"README.md lacks the {START} ... {END} table"
    table = text.split(START)[1].split(END)[0]
    rows = {}
    for line in table.strip().splitlines()[2:]:
        shown, answer, status = (cell.strip() for cell in line.strip("|").split(" | "))
        rows[shown.strip("`")] = (answer.replace("&#124;", "|"), status)
    return rows


def test_readme_reliability_table_lists_every_case_with_its_answer() -> None:
    expected = {case.shown: (case.message, case.status) for case in CASES} | {
        k: (v, None) for k, v in FAULTS.items()
    }
    if os.environ.get("TRANSFUSION_WRITE_README") == "1":
        missing = sorted(set(expected) - set(SEEN))
        assert not missing, f"run the whole module to write the table; not seen: {missing}"
        text = README.read_text(encoding="utf-8")
        head, rest = text.split(START)
        README.write_text(f"{head}{START}\n{render_table()}\n{END}{rest.split(END)[1]}", encoding="utf-8")
    rows = readme_rows()
    assert list(rows) == list(expected), "README's table and the cases differ: TRANSFUSION_WRITE_README=1"
    assert len(rows) >= 40
    for shown, (pattern, status) in expected.items():
        answer, shown_status = rows[shown]
        assert re.search(pattern, answer), f"README's answer to {shown!r} no longer matches {pattern!r}"
        if status is not None:
            assert shown_status == str(status), shown


# -- data read by its range, provenance ----------------------------------------------------------------
def test_float_images_in_0_1_are_scaled_not_cast_to_black(tmp_path: Path) -> None:
    import numpy as np

    from timm_transfusion.data import load_dataset_spec

    pixels = np.random.default_rng(1).random((4, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "f.npz", train_images=pixels, train_labels=np.arange(4).reshape(-1, 1))
    image = np.asarray(load_dataset_spec(f"npz:{tmp_path / 'f.npz'}", "train")[0]["image"])
    assert np.array_equal(image, np.round(pixels[0] * 255).astype(np.uint8)) and image.max() > 200


def test_label_gaps_are_accepted_when_num_classes_says_so(tmp_path: Path) -> None:
    import numpy as np

    from timm_transfusion.data import LabelError, label_info, load_dataset_spec

    labels = np.array([0, 1, 2, 9]).reshape(-1, 1)
    np.savez(tmp_path / "g.npz", train_images=np.zeros((4, 8, 8), np.uint8), train_labels=labels)
    ds = load_dataset_spec(f"npz:{tmp_path / 'g.npz'}", "train")
    with pytest.raises(LabelError, match="labels 3, 4, 5, 6, 7, 8 never occur"):
        label_info(ds)
    assert label_info(ds, num_classes=10).num_classes == 10


def test_cca_report_records_what_was_compared_and_names_a_random_side(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    from reliability_cases import run_folder, tiny_npz

    from timm_transfusion.hub import ReportFolderError, write_card

    run, out = run_folder(tmp_path / "run"), tmp_path / "report"
    tiny_npz(tmp_path)
    argv = ["cca", str(run), str(run), "--random-b", "--dataset", f"npz:{tmp_path / 'tiny.npz'}"]
    argv += ["--img-size", "32", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "similarity.json").read_text())
    side_a, side_b = report["provenance"]["a"], report["provenance"]["b"]
    assert side_a == {"source": str(run), "folder": str(run.resolve()), "random": False, "seed": None}
    assert side_b == {"source": str(run), "folder": str(run.resolve()), "random": True, "seed": 4}
    assert report["provenance"]["data"] == {
        "dataset": f"npz:{tmp_path / 'tiny.npz'}",
        "split": "test",
        "limit": None,
        "img_size": 32,
        "max_positions": 64,
        "position_seed": 3,
    }
    assert report["model_b"] == f"{run} [random init, seed 4]" and report["model_a"] == str(run)
    assert all(layer["datapoints"] > 0 for layer in report["layers"])
    markdown = (out / "similarity.md").read_text()
    assert f"- B: `{run}` (random init of its architecture, seed 4, folder {run.resolve()})" in markdown
    assert "random init" in write_card(run, similarity=out).read_text()  # A is this run: accepted

    assert main([*argv[:3], "--no-pretrained", *argv[4:-1], str(tmp_path / "random-a")]) == 0
    with pytest.raises(ReportFolderError, match="--force"):  # A was a random init, not the trained run
        write_card(run, similarity=tmp_path / "random-a")


def test_quick_and_full_demo_never_share_run_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from timm_transfusion.train.results import REPORT_FILES

    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    outputs = []

    def record_output(output: Path, quick: bool) -> dict[str, Path]:
        outputs.append(output)
        return dict.fromkeys(REPORT_FILES, output)

    monkeypatch.setattr(demo, "synthetic_demo", record_output)
    assert demo.main(["--quick"]) == 0 and demo.main([]) == 0
    quick, full = outputs
    assert quick != full and quick not in full.parents and full not in quick.parents
