"""Publishing to the Hub: the model card, push / pull through a local Hub-compatible server
(tests/hub_server.py) driven by the real huggingface_hub client, and the `card` / `push` CLI."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
from conftest import shared_file
from hub_server import LocalHub
from huggingface_hub import HfApi, ModelCard, constants, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError
from PIL import Image
from safetensors.torch import load_file

from timm_transfusion.hub import (
    MissingTokenError,
    NothingToPushError,
    PushError,
    ReportFolderError,
    RunFolderError,
    load_report,
    load_run_folder,
    push_to_hub,
    render_card,
    write_card,
)
from timm_transfusion.hub.card import card_data, explain_init, usage_snippet
from timm_transfusion.hub.layout import collect_files
from timm_transfusion.similarity import LayerSimilarity, SimilarityReport

TOKEN = "hf_TransfusionTestToken7f3a9c"
USER = "alice"
ARCH = "test_resnet"  # a stock timm architecture: loading it needs no plugin
SUMMARY = {
    "model": ARCH,
    "init": "transfusion-2",
    "init_source": "hf-hub:timm/resnet18.a1_in1k",
    "dataset": "npz:/data/retinamnist.npz",
    "split": "test",
    "seed": 3,
    "num_classes": 5,
    "final": {"auc": 0.8125, "accuracy": 0.5625, "loss": 1.0423},
    "steps_to_threshold": {"0.7": 40, "0.8": 120, "0.9": None},
    "wall_time_s": 12.5,
}
METRICS = [
    {"step": 40, "epoch": 1, "loss": 1.31, "auc": 0.71, "accuracy": 0.41},
    {"step": 80, "epoch": 2, "loss": 1.12, "auc": 0.78, "accuracy": 0.50},
    {"step": 120, "epoch": 3, "loss": 1.04, "auc": 0.8125, "accuracy": 0.5625},
]
SIMILARITY = SimilarityReport(
    model_a="runs/transfusion-2-seed3",
    model_b="runs/random-seed3",
    metrics=("pwcca", "linear_cka"),
    layers=[
        LayerSimilarity("stem", "stem", 16, 16, 4096, {"pwcca": 0.93, "linear_cka": 0.97}),
        LayerSimilarity("stages.0", "stages.0", 24, 24, 4096, {"pwcca": 0.81, "linear_cka": None}),
    ],
    images=64,
)


# -- fixtures ---------------------------------------------------------------------------------------------
def _image(path: Path, color: tuple[int, int, int]) -> None:
    Image.new("RGB", (16, 12), color).save(path)


def make_run_folder(path: Path) -> Path:
    """A run folder per the training contract: save_for_hf weights + summary, metrics, args, plots."""
    torch.manual_seed(0)
    model = timm.create_model(ARCH, num_classes=5)
    timm.models.save_for_hf(model, path, safe_serialization=True)
    (path / "summary.json").write_text(json.dumps(SUMMARY))
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in METRICS))
    (path / "train_args.json").write_text(json.dumps({"lr": 0.001, "batch_size": 32, "max_steps": 120}))
    _image(path / "convergence.png", (10, 120, 200))
    _image(path / "filters.png", (200, 120, 10))
    return path


def similarity_about(run: Path) -> SimilarityReport:
    """SIMILARITY as `transfusion cca RUN runs/random-seed3` records it: model A is ``run``."""
    side_a = {"source": str(run), "folder": str(run.resolve()), "random": False, "seed": None}
    side_b = {"source": SIMILARITY.model_b, "folder": None, "random": False, "seed": None}
    return replace(SIMILARITY, model_a=str(run), provenance={"a": side_a, "b": side_b})


def make_similarity_report(path: Path, run: Path) -> Path:
    similarity_about(run).save(path)
    return path


def make_experiment(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "results.csv").write_text("init,seed,auc\nrandom,0,0.71\ntransfusion-2,0,0.8125\n")
    (path / "results.md").write_text(
        "| init | auc |\n|---|---|\n| random | 0.71 |\n| transfusion-2 | 0.8125 |\n\n"
        "![convergence](convergence.png)\n\n![first-layer filters](filters.png)\n"  # as the experiment writes it
    )
    _image(path / "convergence.png", (1, 2, 3))
    _image(path / "filters.png", (3, 2, 1))
    return path


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    return make_run_folder(tmp_path / "run")


@pytest.fixture
def similarity_report(tmp_path: Path, run_folder: Path) -> Path:
    return make_similarity_report(tmp_path / "cca", run_folder)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (short) run of the training code: mobilenetv1_025 (a plugin architecture), transfusion-2 from
    its ImageNet weights, on synthetic fundus images."""
    from timm_transfusion.train import TrainConfig, train

    source = shared_file("mobilenetv1_025_imagenet.safetensors")
    folder = tmp_path_factory.mktemp("trained") / "run"
    train(
        TrainConfig(
            model="mobilenetv1_025",
            dataset="synthetic:fundus:train=64,val=32,test=32",
            output=str(folder),
            init="transfusion-2",
            init_source=str(source),
            max_steps=4,
            eval_every=2,
            batch_size=16,
            img_size=32,
            progress=False,
            log_with="none",
        )
    )
    return folder


@pytest.fixture(scope="module")
def hub() -> LocalHub:
    server = LocalHub(tokens={TOKEN: USER}).start()
    yield server
    server.stop()


@pytest.fixture
def hub_env(hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HF_* settings pointing at the local hub, with no token anywhere.

    Returned for subprocesses; huggingface_hub reads them at import, so this process gets the same values
    patched into ``huggingface_hub.constants``. Xet is off: the local hub implements LFS, not Xet storage.
    """
    home = tmp_path / "hf_home"
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for key in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_OIDC_RESOURCE",
        "HF_HUB_OFFLINE",
        "HF_HUB_CACHE",
        "HF_TOKEN_PATH",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    return {**os.environ, **env}


@pytest.fixture
def repo_id() -> str:
    return f"{USER}/run-{uuid.uuid4().hex[:8]}"


def run_python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=180
    )


def folder_snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256, mtime_ns) of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def repo_snapshot(hub: LocalHub, repo_id: str) -> tuple:
    repo = hub.repo(repo_id)
    return dict(repo.branches), dict(repo.pull_requests), sorted(repo.commits), hub.files(repo_id)


def image_links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)


# -- the card ---------------------------------------------------------------------------------------------
def test_card_metadata_holds_tags_base_model_and_model_index(run_folder: Path) -> None:
    data = card_data(load_run_folder(run_folder), repo_id="alice/retina")
    assert data.library_name == "timm"
    assert set(data.tags) == {
        "timm",
        "image-classification",
        "transfusion",
        "transfusion-2",
        "medical-imaging",
    }
    assert data.base_model == "timm/resnet18.a1_in1k"
    assert data.license == "apache-2.0"
    results = {r.metric_type: r for r in data.eval_results}
    assert results["roc_auc"].metric_value == 0.8125 and results["accuracy"].metric_value == 0.5625
    assert {r.dataset_name for r in results.values()} == {"retinamnist"}
    assert {r.dataset_split for r in results.values()} == {"test"}


def test_hub_datasets_and_timm_sources_become_metadata(run_folder: Path) -> None:
    summary = {
        **SUMMARY,
        "dataset": "hf:stanfordml/chexpert-small:frontal",
        "init_source": "resnet18.a1_in1k",
    }
    (run_folder / "summary.json").write_text(json.dumps(summary))
    data = card_data(load_run_folder(run_folder), repo_id="alice/cx")
    assert data.datasets == ["stanfordml/chexpert-small"] and "medical-imaging" in data.tags
    assert data.base_model == "timm/resnet18.a1_in1k"
    assert data.eval_results[0].dataset_type == "stanfordml/chexpert-small"


def test_init_without_source_names_the_models_default_weights_as_base_model(run_folder: Path) -> None:
    summary = {**SUMMARY, "model": "resnet50", "init": "meanvar", "init_source": None}
    (run_folder / "summary.json").write_text(json.dumps(summary))
    assert card_data(load_run_folder(run_folder), repo_id="alice/r").base_model == "timm/resnet50.a1_in1k"
    (run_folder / "summary.json").write_text(json.dumps({**summary, "init": "random"}))
    assert card_data(load_run_folder(run_folder), repo_id="alice/r").base_model is None


def test_local_sources_and_datasets_give_no_hub_links(run_folder: Path) -> None:
    summary = {**SUMMARY, "dataset": "hf:./saved_cifar", "init_source": "/weights/imagenet.safetensors"}
    (run_folder / "summary.json").write_text(json.dumps(summary))
    data = card_data(load_run_folder(run_folder), repo_id="alice/c10")
    assert data.datasets is None and data.base_model is None and "medical-imaging" not in data.tags


def test_card_body_has_convergence_similarity_usage_and_citation(
    run_folder: Path, similarity_report: Path
) -> None:
    run = load_run_folder(run_folder)
    files = collect_files(run, similarity=similarity_report)
    text = str(render_card(run, repo_id="alice/retina", files=files))
    assert "| 0.9 | not reached |" in text and "| 0.7 | 40 |" in text
    assert (
        "| stem | 16 | 16 | 4096 | 0.9300 | 0.9700 |" in text
        and "| stages.0 | 24 | 24 | 4096 | 0.8100 | n/a |" in text
    )
    assert "first k block groups" in text and "(k = 2)" in text
    assert 'timm.create_model("hf-hub:alice/retina", pretrained=True)' in text
    assert "import timm_transfusion" not in text  # stock timm architecture
    assert "@inproceedings{raghu2019transfusion" in text
    assert set(image_links(text)) == {
        "reports/convergence.png",
        "reports/filters.png",
        "reports/similarity/similarity.png",
    }


def test_card_preview_is_written_into_the_run_folder_with_working_links(
    run_folder: Path, similarity_report: Path
) -> None:
    path = write_card(run_folder, similarity=similarity_report, repo_id="alice/retina")
    assert path == run_folder / "README.md"
    card = ModelCard.load(path)
    assert card.data.eval_results[0].metric_value == 0.8125
    links = image_links(card.text)
    assert len(links) == 3 and all((run_folder / link).resolve().is_file() for link in links)


def test_card_preview_draws_the_plots_a_run_folder_lacks(run_folder: Path) -> None:
    for name in ("convergence.png", "filters.png"):
        (run_folder / name).unlink()
    text = write_card(run_folder).read_text()
    assert {"convergence.png", "filters.png"} <= set(image_links(text))
    assert Image.open(run_folder / "convergence.png").size[0] > 100
    assert Image.open(run_folder / "filters.png").size[0] > 100


def test_plugin_architectures_get_the_plugin_import_in_the_snippet() -> None:
    assert "import timm_transfusion" in usage_snippet(
        "a/b", architecture="cbr_tiny", revision=None, multilabel=False
    )
    snippet = usage_snippet("a/b", architecture="resnet18", revision="dev", multilabel=True)
    assert (
        "import timm_transfusion" not in snippet and '"hf-hub:a/b@dev"' in snippet and "sigmoid()" in snippet
    )


def test_init_explanations_come_from_the_registry() -> None:
    from timm_transfusion import list_inits

    assert explain_init("meanvar") == list_inits()["meanvar"] + "."
    assert explain_init("transfusion-3+meanvar") == list_inits()["transfusion-{k}+meanvar"] + " (k = 3)."
    assert "not registered" in explain_init("no-such-init")


def test_folder_without_weights_is_rejected_naming_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RunFolderError, match="missing model.safetensors"):
        load_run_folder(tmp_path)


def test_similarity_folder_without_report_is_rejected(run_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportFolderError, match="no similarity.json"):
        write_card(run_folder, similarity=tmp_path / "empty")


# -- push and pull through the local hub ------------------------------------------------------------------
LOAD_SCRIPT = """
import sys, timm, torch
import timm_transfusion  # registers mobilenetv1_025
torch.set_num_threads(1)
model = timm.create_model("hf-hub:" + sys.argv[1], pretrained=True).eval()
torch.manual_seed(0)
with torch.no_grad():
    logits = model(torch.randn(2, *model.pretrained_cfg["input_size"]))
torch.save({"state_dict": model.state_dict(), "logits": logits}, sys.argv[2])
"""


def test_pushed_trained_run_loads_in_timm_with_identical_weights_and_predictions(
    hub: LocalHub, hub_env: dict[str, str], trained_run: Path, repo_id: str, tmp_path: Path
) -> None:
    run_folder = trained_run
    before = folder_snapshot(run_folder)
    result = push_to_hub(run_folder, repo_id, token=TOKEN)
    assert folder_snapshot(run_folder) == before
    assert {"config.json", "model.safetensors", "README.md", "reports/summary.json"} <= set(result.files)
    drawn = {
        "reports/convergence.png",
        "reports/filters.png",
    }  # the run folder has no plots: drawn for the card
    assert drawn <= set(image_links(hub.files(repo_id)["README.md"].decode()))
    assert all(Image.open(io.BytesIO(hub.files(repo_id)[path])).size[0] > 100 for path in drawn)
    assert hub.files(repo_id)["config.json"] == (run_folder / "config.json").read_bytes()
    assert hub.files(repo_id)["model.safetensors"] == (run_folder / "model.safetensors").read_bytes()

    out = tmp_path / "loaded.pt"
    proc = run_python(LOAD_SCRIPT, hub_env, repo_id, str(out))
    assert proc.returncode == 0, proc.stderr
    loaded = torch.load(out)
    expected = load_file(run_folder / "model.safetensors")
    assert loaded["state_dict"].keys() == expected.keys()
    assert all(torch.equal(loaded["state_dict"][k], expected[k]) for k in expected)

    torch.set_num_threads(1)
    local = timm.create_model(f"local-dir:{run_folder}", pretrained=True).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        logits = local(torch.randn(2, *local.pretrained_cfg["input_size"]))
    assert torch.equal(loaded["logits"], logits)


def test_load_report_returns_the_pushed_numbers(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, similarity_report: Path, repo_id: str
) -> None:
    pushed = push_to_hub(run_folder, repo_id, token=TOKEN, similarity=similarity_report)
    report = load_report(repo_id)
    assert report.commit == pushed.commit_oid
    assert report.summary == SUMMARY and report.final == SUMMARY["final"]
    assert report.convergence.steps_to_threshold == {0.7: 40, 0.8: 120, 0.9: None}
    assert report.convergence.curve("auc") == ([40, 80, 120], [0.71, 0.78, 0.8125])
    assert report.train_args["max_steps"] == 120
    assert report.similarity == similarity_about(run_folder)
    assert report.similarity.value("stages.0", "pwcca") == 0.81
    assert report.experiment is None


def test_experiment_reports_are_pushed_shown_and_read_back(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, tmp_path: Path, repo_id: str
) -> None:
    push_to_hub(run_folder, repo_id, token=TOKEN, experiment=make_experiment(tmp_path / "experiment"))
    card = hub.files(repo_id)["README.md"].decode()
    assert "| transfusion-2 | 0.8125 |" in card
    links = image_links(card)
    assert {"reports/experiment/convergence.png", "reports/experiment/filters.png"} <= set(links)
    assert set(links) <= set(hub.files(repo_id)) and len(links) == len(set(links))
    report = load_report(repo_id)
    assert report.experiment.rows[1] == {"init": "transfusion-2", "seed": 0.0, "auc": 0.8125}


def test_card_in_the_repo_parses_and_every_image_it_references_is_there(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, similarity_report: Path, repo_id: str
) -> None:
    push_to_hub(run_folder, repo_id, token=TOKEN, similarity=similarity_report)
    card = ModelCard.load(hf_hub_download(repo_id, "README.md"))
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"roc_auc": 0.8125, "accuracy": 0.5625}
    assert card.data.to_dict()["library_name"] == "timm"
    repo_files = set(HfApi().list_repo_files(repo_id))
    links = image_links(card.text)
    assert len(links) == 3 and set(links) <= repo_files


@pytest.mark.parametrize("run", ["trained_run", "run_folder"])
def test_usage_snippet_in_the_card_runs_against_the_hub(
    hub: LocalHub, hub_env: dict[str, str], run: str, repo_id: str, request: pytest.FixtureRequest
) -> None:
    push_to_hub(request.getfixturevalue(run), repo_id, token=TOKEN)
    card = Path(hf_hub_download(repo_id, "README.md")).read_text()
    snippet = re.search(r"## How to use\s+```python\n(.*?)```", card, re.DOTALL).group(1)
    assert ("import timm_transfusion" in snippet) == (
        run == "trained_run"
    )  # plugin architecture or stock timm
    proc = run_python(snippet, hub_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("tensor([[") and proc.stdout.count(",") == 4  # 5 class probabilities


def test_second_push_is_a_new_commit_that_updates_the_card(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    first = push_to_hub(run_folder, repo_id, token=TOKEN)
    summary = {**SUMMARY, "final": {**SUMMARY["final"], "auc": 0.875}}
    (run_folder / "summary.json").write_text(json.dumps(summary))
    second = push_to_hub(run_folder, repo_id, token=TOKEN, commit_message="Retrained")
    commits = HfApi().list_repo_commits(repo_id)
    assert [c.commit_id for c in commits[:2]] == [second.commit_oid, first.commit_oid]
    assert commits[0].title == "Retrained" and len(commits) == 3  # + the repo's initial commit
    card = ModelCard.load(hf_hub_download(repo_id, "README.md"))
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["roc_auc"] == 0.875


def test_revision_pushes_to_a_branch_and_leaves_main_alone(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    result = push_to_hub(run_folder, repo_id, token=TOKEN, revision="meanvar-trial")
    assert result.revision == "meanvar-trial"
    assert hub.repo(repo_id).branches["meanvar-trial"] == result.commit_oid
    assert set(hub.files(repo_id, "main")) == {".gitattributes"}
    card = Path(hf_hub_download(repo_id, "README.md", revision="meanvar-trial")).read_text()
    assert f'"hf-hub:{repo_id}@meanvar-trial"' in card


def test_create_pr_opens_a_pull_request(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    result = push_to_hub(run_folder, repo_id, token=TOKEN, create_pr=True)
    assert result.pr_url == f"{hub.url}/{repo_id}/discussions/1"
    assert set(hub.files(repo_id, "main")) == {".gitattributes"}
    assert "model.safetensors" in hub.files(repo_id, "refs/pr/1")


def test_failed_commit_leaves_repo_and_run_folder_as_they_were(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, similarity_report: Path, repo_id: str
) -> None:
    push_to_hub(run_folder, repo_id, token=TOKEN)
    repo_before, run_before = repo_snapshot(hub, repo_id), folder_snapshot(run_folder)
    hub.fail_next_commit(500)
    with pytest.raises(PushError, match=rf"{repo_id}.*nothing was committed.*500"):
        push_to_hub(run_folder, repo_id, token=TOKEN, similarity=similarity_report)
    assert repo_snapshot(hub, repo_id) == repo_before
    assert folder_snapshot(run_folder) == run_before
    assert ("POST", f"/{repo_id}.git/info/lfs/objects/batch", 200) in hub.state.requests  # it failed mid-way


def test_failed_first_push_leaves_no_repo_behind(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    hub.fail_next_commit(500)
    with pytest.raises(PushError, match="nothing was committed"):
        push_to_hub(run_folder, repo_id, token=TOKEN)
    assert repo_id not in hub.state.repos
    assert push_to_hub(run_folder, repo_id, token=TOKEN).commit_oid  # and the name is free to use again


def test_failed_push_to_a_new_branch_removes_the_branch(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    push_to_hub(run_folder, repo_id, token=TOKEN)
    before = repo_snapshot(hub, repo_id)
    hub.fail_next_commit(503, "Service Unavailable")
    with pytest.raises(PushError, match="Service Unavailable"):
        push_to_hub(run_folder, repo_id, token=TOKEN, revision="new-branch")
    assert repo_snapshot(hub, repo_id) == before


def test_private_repo_is_not_readable_without_token(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    push_to_hub(run_folder, repo_id, token=TOKEN, private=True)
    assert hub.repo(repo_id).private
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "config.json", token=False)
    assert load_report(repo_id, token=TOKEN).final == SUMMARY["final"]


def test_a_model_object_is_pushed_as_save_for_hf_writes_it(
    hub: LocalHub, hub_env: dict[str, str], repo_id: str
) -> None:
    torch.manual_seed(1)
    model = timm.create_model(ARCH, num_classes=2)
    result = push_to_hub(model, repo_id, token=TOKEN)
    assert set(result.files) == {"README.md", "config.json", "model.safetensors", "reports/filters.png"}
    weights = load_file(hf_hub_download(repo_id, "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert json.loads(hub.files(repo_id)["config.json"])["architecture"] == ARCH
    assert "No initialization was recorded" in ModelCard.load(hf_hub_download(repo_id, "README.md")).text


def test_repo_name_without_namespace_goes_to_the_token_owner(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path
) -> None:
    name = f"bare-{uuid.uuid4().hex[:8]}"
    result = push_to_hub(run_folder, name, token=TOKEN)
    assert result.repo_id == f"{USER}/{name}"
    assert f'"hf-hub:{USER}/{name}"' in hub.files(result.repo_id)["README.md"].decode()


def test_pushing_to_another_namespace_is_refused_clearly(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path
) -> None:
    with pytest.raises(PushError, match="'bob/retina' failed.*rights to create a model under the namespace"):
        push_to_hub(run_folder, "bob/retina", token=TOKEN)
    assert "bob/retina" not in hub.state.repos


def test_invalid_token_is_refused_without_echoing_it(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path
) -> None:
    with pytest.raises(PushError, match="Invalid credentials") as failure:
        push_to_hub(run_folder, f"{USER}/never", token="hf_wrongToken123")
    assert "hf_wrongToken123" not in str(failure.value)


def test_missing_token_fails_before_any_request(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    requests_before = len(hub.state.requests)
    with pytest.raises(MissingTokenError, match="HF_TOKEN"):
        push_to_hub(run_folder, repo_id)
    assert len(hub.state.requests) == requests_before


def test_token_is_never_written_or_logged(
    hub: LocalHub,
    hub_env: dict[str, str],
    run_folder: Path,
    similarity_report: Path,
    repo_id: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="huggingface_hub"):
        push_to_hub(run_folder, repo_id, token=TOKEN, similarity=similarity_report)
        load_report(repo_id, token=TOKEN)
    assert "About to commit to the hub" in caplog.text  # huggingface_hub's debug log was captured
    assert f"Bearer {TOKEN}" in hub.state.authorizations  # the token was used ...
    out, err = capfd.readouterr()
    assert TOKEN not in caplog.text + out + err  # ... but never logged or printed
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert not [path for path, content in hub.files(repo_id).items() if TOKEN.encode() in content]


# -- CLI -----------------------------------------------------------------------------------------------
CLI = "import sys; from timm_transfusion.cli import main; sys.exit(main(sys.argv[1:]))"


def test_cli_push_uses_hf_endpoint_and_hf_token(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str
) -> None:
    proc = run_python(
        CLI, {**hub_env, "HF_TOKEN": TOKEN}, "push", str(run_folder), repo_id, "--revision", "dev"
    )
    assert proc.returncode == 0, proc.stderr
    commit = hub.repo(repo_id).branches["dev"]
    assert proc.stdout.strip() == f"{hub.url}/{repo_id}/commit/{commit}"
    assert TOKEN not in proc.stdout + proc.stderr
    assert "README.md" in hub.files(repo_id, "dev")


def test_cli_push_without_token_is_a_clear_error(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path
) -> None:
    requests_before = len(hub.state.requests)
    proc = run_python(CLI, hub_env, "push", str(run_folder), f"{USER}/never-created")
    assert proc.returncode == 2
    assert "no Hugging Face token" in proc.stderr and "Traceback" not in proc.stderr
    assert len(hub.state.requests) == requests_before


def test_cli_card_writes_the_preview(
    run_folder: Path, similarity_report: Path, capsys: pytest.CaptureFixture
) -> None:
    from timm_transfusion.cli import main

    assert main(["card", str(run_folder), "--similarity", str(similarity_report)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run_folder / 'README.md'}"
    assert "## Layer-wise representation similarity" in (run_folder / "README.md").read_text()


# -- checks before publishing (issue 16) ----------------------------------------------------------------
def test_a_report_about_another_model_is_refused_unless_forced(run_folder: Path, tmp_path: Path) -> None:
    other = make_similarity_report(tmp_path / "other-cca", make_run_folder(tmp_path / "other-run"))
    with pytest.raises(ReportFolderError, match=r"has model A .*other-run.*, not the run .*--force"):
        write_card(run_folder, similarity=other)
    assert not (run_folder / "README.md").exists()
    text = write_card(run_folder, similarity=other, force=True).read_text()
    assert "other-run" in text


def test_a_report_without_provenance_naming_another_model_is_refused(
    run_folder: Path, tmp_path: Path
) -> None:
    SIMILARITY.save(tmp_path / "old-cca")  # model_a "runs/transfusion-2-seed3", no provenance
    with pytest.raises(ReportFolderError, match="runs/transfusion-2-seed3"):
        collect_files(load_run_folder(run_folder), similarity=tmp_path / "old-cca")


def test_a_report_whose_model_a_was_random_is_not_about_the_run(run_folder: Path, tmp_path: Path) -> None:
    report = similarity_about(run_folder)
    random_a = {**report.provenance, "a": {**report.provenance["a"], "random": True, "seed": 0}}
    replace(report, provenance=random_a).save(tmp_path / "random-a")
    with pytest.raises(ReportFolderError, match="--force"):
        collect_files(load_run_folder(run_folder), similarity=tmp_path / "random-a")


def test_create_pr_with_nothing_changed_opens_no_pull_request_and_says_so(
    hub: LocalHub, hub_env: dict[str, str], run_folder: Path, repo_id: str, capsys: pytest.CaptureFixture
) -> None:
    from timm_transfusion.cli import main

    first = push_to_hub(run_folder, repo_id, token=TOKEN)
    with pytest.raises(NothingToPushError, match="already holds exactly these files; no pull request"):
        push_to_hub(run_folder, repo_id, token=TOKEN, create_pr=True)
    assert main(["push", str(run_folder), repo_id, "--create-pr", "--token", TOKEN]) == 1
    assert "no pull request was opened" in capsys.readouterr().err
    assert hub.repo(repo_id).pull_requests == {} and hub.repo(repo_id).branches["main"] == first.commit_oid
    (run_folder / "summary.json").write_text(json.dumps({**SUMMARY, "seed": 99}))
    assert push_to_hub(run_folder, repo_id, token=TOKEN, create_pr=True).pr_url is not None
