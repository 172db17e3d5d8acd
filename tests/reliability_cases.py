"""The reliability table: bad inputs a new user types, each with the one line the command must answer.

``tests/test_reliability.py`` drives every case through the real CLI (``cli.main``, in process) and checks the
exit status, the message and that the folder the case works in is byte-for-byte unchanged; it also checks that
README.md's reliability table lists every case with a message that matches, and rewrites that table from the
messages it saw when ``TRANSFUSION_WRITE_README=1``.

In ``argv``, ``{tmp}`` is the case's own empty folder and ``{out}`` = ``{tmp}/out`` its output folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN = (
    "train --model test_resnet --dataset synthetic:fundus:train=32,val=16 --output {out} --max-steps 2 "
    "--batch-size 8 --no-progress --log-with none"
)
EXPERIMENT = (
    "experiment --model test_resnet --dataset synthetic:fundus:train=32,val=16 --output {out} --max-steps 2 "
    "--batch-size 8 --seeds 1 --no-progress --log-with none"
)
CCA = "cca test_resnet test_resnet --no-pretrained --dataset npz:{tmp}/tiny.npz --out {out}"


@dataclass(frozen=True)
class Case:
    """``shown`` is the input as the README lists it; ``base`` + ``extra`` the full command line."""

    shown: str
    base: str
    extra: str
    message: str  # regular expression the answer's last line must match (re.search)
    status: int = 2
    setup: Callable[[Path], None] | None = None
    cpu_only: bool = False  # valid on a machine with a GPU (e.g. fp16)

    def argv(self, tmp: Path) -> list[str]:
        words = f"{self.base} {self.extra}".split()
        return [w.format(tmp=tmp, out=tmp / "out") for w in words]


# -- inputs the cases read --------------------------------------------------------------------------------
def _npz(name: str, images: np.ndarray, labels: np.ndarray) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        labels_2d = labels.reshape(-1, 1)
        np.savez(
            tmp / name, train_images=images, train_labels=labels_2d, val_images=images, val_labels=labels_2d
        )

    return write


_RNG = np.random.default_rng(0)
_PIXELS = _RNG.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
_CLASSES = np.arange(16) % 4


def _with_nan() -> np.ndarray:
    images = _PIXELS / 255.0
    images[0, 0, 0, 0] = np.nan
    return images


def _stray_label() -> np.ndarray:
    labels = _CLASSES.copy()
    labels[5] = 9
    return labels


def tiny_npz(tmp: Path) -> None:
    np.savez(tmp / "tiny.npz", test_images=_PIXELS[:6], test_labels=np.zeros((6, 1), dtype=np.int64))


def run_folder(folder: Path, *, num_classes: int = 3) -> Path:
    """A finished run folder as training leaves it (timm save_for_hf + summary + metrics)."""
    import timm
    import torch

    torch.manual_seed(0)
    timm.models.save_for_hf(
        timm.create_model("test_resnet", num_classes=num_classes), folder, safe_serialization=True
    )
    summary = {"model": "test_resnet", "init": "random", "dataset": "synthetic:fundus", "final": {"auc": 0.5}}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "auc": 0.5}) + "\n")
    return folder


def _run(tmp: Path) -> None:
    run_folder(tmp / "run")


def _run_and_foreign_report(tmp: Path) -> None:
    from timm_transfusion.similarity import LayerSimilarity, SimilarityReport

    run_folder(tmp / "run")
    other = run_folder(tmp / "other")
    side = {"source": str(other), "folder": str(other.resolve()), "random": False, "seed": None}
    layer = LayerSimilarity("stem", "stem", 4, 4, 64, {"pwcca": 0.9})
    report = SimilarityReport(
        str(other), "test_resnet", ("pwcca",), [layer], 16, provenance={"a": side, "b": side}
    )
    report.save(tmp / "report")


def _source_weights(tmp: Path) -> None:
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("test_resnet").state_dict(), tmp / "test_resnet.safetensors")


def _file(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).write_text("not a folder\n")


def _foreign_folder(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("my notes\n")


def _other_run(tmp: Path) -> None:
    """train_args.json of the TRAIN command with another learning rate."""
    from timm_transfusion.cli import build_parser
    from timm_transfusion.train import config_from_args

    argv = Case("", TRAIN, "--lr 0.1", "").argv(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "train_args.json").write_text(
        json.dumps(config_from_args(build_parser().parse_args(argv)).to_json())
    )


def _mixed_sizes(tmp: Path) -> None:
    """A saved dataset whose images have two sizes (only the PIL path can batch them)."""
    import datasets
    import PIL.Image

    images = [PIL.Image.new("RGB", size, (i * 30, 0, 0)) for i, size in enumerate([(32, 32), (40, 32)] * 4)]
    split = datasets.Dataset.from_dict({"image": images, "label": [0, 1] * 4})
    datasets.disable_progress_bars()
    try:
        datasets.DatasetDict({"train": split, "val": split}).save_to_disk(tmp / "mixed")
    finally:
        datasets.enable_progress_bars()


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def run_all(tmp: Path) -> None:
        for setup in setups:
            setup(tmp)

    return run_all


CASES: list[Case] = [
    # train: every option checked before the run folder is touched
    Case("train --lr -1", TRAIN, "--lr -1", r"--lr must be > 0, got -1\.0"),
    Case("train --lr 0", TRAIN, "--lr 0", r"--lr must be > 0, got 0\.0"),
    Case(
        "train --opt sgdd", TRAIN, "--opt sgdd", r"--opt 'sgdd' is not a timm optimizer; did you mean 'sgd'\?"
    ),
    Case(
        "train --sched cosinee",
        TRAIN,
        "--sched cosinee",
        r"--sched 'cosinee' is not a timm scheduler; did you mean 'cosine'\?",
    ),
    Case("train --sched plateau", TRAIN, "--sched plateau", r"--sched 'plateau' cannot schedule per step"),
    Case("train --workers -1", TRAIN, "--workers -1", r"--workers must be >= 0, got -1"),
    Case("train --pipeline gpu", TRAIN, "--pipeline gpu", r"invalid choice: 'gpu'"),
    Case(
        "train --pipeline device (images of two sizes)",
        "train --model test_resnet --dataset hf:{tmp}/mixed --output {out} --max-steps 1 --batch-size 4 "
        "--no-progress --log-with none",
        "--pipeline device",
        r"--pipeline device needs images of one size; these splits hold 2 sizes \(32x32 \(8\), 40x32 \(8\)\)",
        setup=_mixed_sizes,
    ),
    Case(
        "train --model resnet5O",
        TRAIN,
        "--model resnet5O",
        r"--model 'resnet5O' is not a timm model; did you mean 'resnet50'\?",
    ),
    Case(
        "train --model local-dir:absent",
        TRAIN,
        "--model local-dir:{tmp}/absent",
        r"--model local-dir:.*absent: the folder .* does not exist",
    ),
    Case(
        "train --output pointing at a file",
        TRAIN,
        "--output {tmp}/afile",
        r"is a file, not a folder",
        setup=_file("afile"),
    ),
    Case("train --clip-grad -1", TRAIN, "--clip-grad -1", r"--clip-grad must be > 0, got -1\.0"),
    Case("train --img-size 0", TRAIN, "--img-size 0", r"--img-size must be >= 1, got 0"),
    Case("train --weight-decay -1", TRAIN, "--weight-decay -1", r"--weight-decay must be >= 0, got -1\.0"),
    Case("train --warmup-steps -3", TRAIN, "--warmup-steps -3", r"--warmup-steps must be >= 0, got -3"),
    Case(
        "train --keep-checkpoints -1",
        TRAIN,
        "--keep-checkpoints -1",
        r"--keep-checkpoints must be >= 0, got -1",
    ),
    Case(
        "train --auc-thresholds 1.5", TRAIN, "--auc-thresholds 1.5", r"--auc-thresholds must lie in \(0, 1\]"
    ),
    Case("train --auc-thresholds high", TRAIN, "--auc-thresholds high", r"expected comma-separated numbers"),
    Case(
        "train --mixed-precision fp16 (no GPU)",
        TRAIN,
        "--mixed-precision fp16",
        r"--mixed-precision fp16 needs a GPU and none is available here",
        cpu_only=True,
    ),
    Case("train --mixed-precision fp8", TRAIN, "--mixed-precision fp8", r"invalid choice: 'fp8'"),
    Case("train --batch-size 0", TRAIN, "--batch-size 0", r"--batch-size must be >= 1, got 0"),
    Case(
        "train --batch-size 64 (32 images)", TRAIN, "--batch-size 64", r"has 32 images, fewer than one batch"
    ),
    Case("train --grad-accum 0", TRAIN, "--grad-accum 0", r"--grad-accum must be >= 1, got 0"),
    Case("train --eval-every 0", TRAIN, "--eval-every 0", r"--eval-every must be >= 1, got 0"),
    Case("train --eval-batch-size 0", TRAIN, "--eval-batch-size 0", r"--eval-batch-size must be >= 1, got 0"),
    Case("train --max-steps -1", TRAIN, "--max-steps -1", r"--max-steps must be >= 0, got -1"),
    Case("train --num-classes 0", TRAIN, "--num-classes 0", r"--num-classes must be >= 1, got 0"),
    Case(
        "train --num-classes 3 (5 grades)",
        TRAIN,
        "--num-classes 3",
        r"labels \[3, 4\] are outside num_classes=3",
    ),
    Case("train --min-lr 0.1 (above --lr)", TRAIN, "--min-lr 0.1", r"--min-lr 0\.1 is above --lr 0\.001"),
    Case("train --seed -1", TRAIN, "--seed -1", r"--seed must be >= 0, got -1"),
    Case(
        "train --log-with tensorbord",
        TRAIN,
        "--log-with tensorbord",
        r"--log-with 'tensorbord' is not a tracker; did you mean 'tensorboard'\?",
    ),
    Case("train --init bogus", TRAIN, "--init bogus", r"unknown init 'bogus'"),
    Case(
        "train --init transfusion-9 (test_resnet has stem + 4 groups)",
        TRAIN,
        "--init transfusion-9 --init-source {tmp}/test_resnet.safetensors",
        r"transfusion-9",
        setup=_source_weights,
    ),
    Case(
        "train --init-source missing.safetensors",
        TRAIN,
        "--init meanvar --init-source {tmp}/missing.safetensors",
        r"init source file .*missing\.safetensors' does not exist",
    ),
    Case(
        "train --init-source local-dir:absent",
        TRAIN,
        "--init meanvar --init-source local-dir:{tmp}/absent",
        r"init source 'local-dir:.*absent': the folder .* does not exist",
    ),
    Case(
        "train --dataset kaggle:retina",
        TRAIN,
        "--dataset kaggle:retina",
        r"unknown dataset spec 'kaggle:retina'",
    ),
    Case(
        "train --dataset npz:missing.npz",
        TRAIN,
        "--dataset npz:{tmp}/missing.npz",
        r"npz file .* does not exist",
    ),
    Case(
        "train --dataset synthetic:retina",
        TRAIN,
        "--dataset synthetic:retina",
        r"unknown synthetic task 'retina'",
    ),
    Case(
        "train on npz float images in [0, 1000]",
        TRAIN,
        "--dataset npz:{tmp}/big.npz",
        r"holds float64 pixels in \[0, 1000\]; expected uint8, integers 0\.\.255, or floats in \[0, 1\] or \[0, 255\]",
        setup=_npz("big.npz", _PIXELS / 255.0 * 1000, _CLASSES),
    ),
    Case(
        "train on npz images with a NaN pixel",
        TRAIN,
        "--dataset npz:{tmp}/nan.npz",
        r"has 1 NaN or infinite pixels",
        setup=_npz("nan.npz", _with_nan(), _CLASSES),
    ),
    Case(
        "train on npz labels 0-3 plus a stray 9",
        TRAIN,
        "--dataset npz:{tmp}/stray.npz",
        r"labels 4, 5, 6, 7, 8 never occur in the training split .* pass --num-classes 10 if those classes are real",
        setup=_npz("stray.npz", _PIXELS, _stray_label()),
    ),
    Case(
        "train on npz labels 0.5, 1.5, ...",
        TRAIN,
        "--dataset npz:{tmp}/float-labels.npz",
        r"holds non-integer labels such as \[0\.5, 1\.5, 2\.5\]",
        setup=_npz("float-labels.npz", _PIXELS, _CLASSES + 0.5),
    ),
    Case(
        "train --img-size 4 (test_resnet downsamples 32x)",
        TRAIN,
        "--img-size 4",
        r"4x4 images are far too small for test_resnet, which downsamples 32x",
    ),
    Case("train --label-column grade", TRAIN, "--label-column grade", r"no label column \['grade'\]"),
    Case("train --eval-split holdout", TRAIN, "--eval-split holdout", r"has no split 'holdout'"),
    Case(
        "train into a folder of other files",
        TRAIN,
        "",
        r"is not empty and holds no run",
        setup=_foreign_folder,
    ),
    Case(
        "train into another run's folder (other --lr)",
        TRAIN,
        "",
        r"holds a different run .* pass --overwrite",
        setup=_other_run,
    ),
    # experiment: the whole grid is checked before the first (random) cell trains
    Case("experiment --seeds 0", EXPERIMENT, "--seeds 0", r"--seeds must be at least 1"),
    Case("experiment --inits ,", EXPERIMENT, "--inits ,", r"--inits names no initializer"),
    Case("experiment --inits random,bogus", EXPERIMENT, "--inits random,bogus", r"unknown init 'bogus'"),
    Case("experiment --lr -1", EXPERIMENT, "--lr -1", r"--lr must be > 0, got -1\.0"),
    Case(
        "experiment --inits random,transfusion-9",
        EXPERIMENT,
        "--inits random,transfusion-9 --source {tmp}/test_resnet.safetensors",
        r"transfusion-9",
        setup=_source_weights,
    ),
    Case(
        "experiment --source missing/weights.safetensors",
        EXPERIMENT,
        "--inits random,meanvar --source missing/weights.safetensors",
        r"--source 'missing/weights\.safetensors' does not exist",
    ),
    Case(
        "experiment --model cbr_small, no --source (it has no default weights)",
        EXPERIMENT,
        "--model cbr_small --inits random,meanvar",
        r"'cbr_small' has no default pretrained weights",
    ),
    Case(
        "experiment --model cbr_small --source (test_resnet weights)",
        EXPERIMENT,
        "--model cbr_small --inits random,pretrained --source {tmp}/test_resnet.safetensors",
        r"(?i)source.*(match|missing|unexpected|shape)",
        setup=_source_weights,
    ),
    Case("experiment --jobs 0", EXPERIMENT, "--jobs 0", r"--jobs must be >= 1, got 0"),
    Case("experiment --stale-after -1", EXPERIMENT, "--stale-after -1", r"--stale-after must be > 0 seconds"),
    Case(
        "experiment --launcher nosuchlauncher",
        EXPERIMENT,
        "--launcher nosuchlauncher",
        r"--launcher 'nosuchlauncher': 'nosuchlauncher' is not a command on PATH",
    ),
    # cca: both models, the dataset and --out are checked before any model loads
    Case(
        "cca runs/absent MODEL",
        CCA.replace("cca test_resnet", "cca {tmp}/runs/absent"),
        "",
        r"RUN_OR_MODEL_A '.*runs/absent': '.*runs/absent' does not exist",
    ),
    Case(
        "cca resnet5O MODEL", CCA.replace("cca test_resnet", "cca resnet5O"), "", r"did you mean 'resnet50'\?"
    ),
    Case(
        "cca FOLDER-WITHOUT-config.json MODEL",
        CCA.replace("cca test_resnet", "cca {tmp}"),
        "",
        r"is not a run folder \(no config\.json\)",
        setup=tiny_npz,
    ),
    Case(
        "cca --out into a folder of other files",
        CCA,
        "",
        r"is not empty and holds no similarity report",
        setup=_both(tiny_npz, _foreign_folder),
    ),
    Case(
        "cca --out pointing at a file",
        CCA,
        "--out {tmp}/afile",
        r"--out '.*afile' exists and is not a folder",
        setup=_both(tiny_npz, _file("afile")),
    ),
    Case("cca --limit 0", CCA, "--limit 0", r"--limit must be >= 1, got 0", setup=tiny_npz),
    Case("cca --batch-size 0", CCA, "--batch-size 0", r"--batch-size must be >= 1, got 0", setup=tiny_npz),
    Case(
        "cca --max-positions 0",
        CCA,
        "--max-positions 0",
        r"--max-positions must be >= 1, got 0",
        setup=tiny_npz,
    ),
    Case("cca --epsilon -1", CCA, "--epsilon -1", r"--epsilon must be >= 0, got -1\.0", setup=tiny_npz),
    Case(
        "cca --device cuda:99",
        CCA,
        "--device cuda:99",
        r"--device cuda:99: this machine has \d+ CUDA device",
        setup=tiny_npz,
    ),
    Case("cca --device gpu0", CCA, "--device gpu0", r"--device 'gpu0' is not a device", setup=tiny_npz),
    Case(
        "cca --dataset kaggle:x",
        CCA,
        "--dataset kaggle:x",
        r"--dataset: unknown dataset spec 'kaggle:x'",
        setup=tiny_npz,
    ),
    Case("cca --metrics pwca", CCA, "--metrics pwca", r"invalid choice: 'pwca'", setup=tiny_npz),
    # card / push: the folders exist and are what they claim; a report must be about this run
    Case(
        "card FOLDER-WITHOUT-WEIGHTS",
        "card {tmp}",
        "",
        r"is not a run folder: missing config\.json, model\.safetensors",
    ),
    Case(
        "card --similarity REPORT-ABOUT-ANOTHER-RUN",
        "card {tmp}/run --similarity {tmp}/report",
        "",
        r"has model A .*other.*, not the run .*pass --force to publish it anyway",
        setup=_run_and_foreign_report,
    ),
    Case(
        "card --similarity absent",
        "card {tmp}/run --similarity {tmp}/absent",
        "",
        r"--similarity '.*absent' does not exist",
        setup=_run,
    ),
    Case(
        "card --experiment FOLDER-WITHOUT-results.csv",
        "card {tmp}/run --experiment {tmp}",
        "",
        r"is not an experiment folder: no results\.csv",
        setup=_run,
    ),
    Case(
        "push RUN bad%repo",
        "push {tmp}/run bad%repo",
        "",
        r"USER/REPO 'bad%repo' is not a valid Hub repo id",
        setup=_run,
    ),
    Case(
        "push --revision a..b",
        "push {tmp}/run alice/x --revision a..b",
        "",
        r"--revision 'a\.\.b' is not a valid branch name",
        setup=_run,
    ),
    Case(
        "push --create-pr --revision refs/pr/1",
        "push {tmp}/run alice/x --create-pr --revision refs/pr/1",
        "",
        r"--create-pr opens a new pull request; it cannot target 'refs/pr/1'",
        setup=_run,
    ),
    Case(
        "push RUN-WITH-FOREIGN-REPORT",
        "push {tmp}/run alice/x --token hf_x --similarity {tmp}/report",
        "",
        r"has model A .*other.*pass --force",
        setup=_run_and_foreign_report,
    ),
]
