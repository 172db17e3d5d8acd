"""Push a run folder (or a model) to the Hub: weights, card and reports in one commit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError

from ..errors import TransfusionError
from ..models.slim import stock_export
from . import layout
from .card import DEFAULT_LICENSE, render_card
from .plots import add_missing_plots
from .run import RunFolder, load_run_folder


class MissingTokenError(TransfusionError, RuntimeError):
    """No Hugging Face token was given or found; raised before anything is sent."""


class PushError(TransfusionError, RuntimeError):
    """The Hub refused the push; nothing was committed."""


class NothingToPushError(PushError):
    """``create_pr`` with files identical to the target branch: the Hub would open no pull request."""


def _git_blob_oid(content: bytes) -> str:
    """git's id of a blob (what the Hub reports as a file's ``blobId``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _blob_oids(path: Path) -> set[str]:
    """The ids the Hub may report for ``path``: as a plain git blob, or as the LFS pointer to it."""
    content = path.read_bytes()
    sha256 = hashlib.sha256(content).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(content)}\n"
    return {_git_blob_oid(content), _git_blob_oid(pointer.encode())}


def _unchanged(head, staging: Path, uploads: list[str], stale: list[str]) -> bool:
    """True when committing ``uploads`` (and deleting ``stale``) would leave ``head``'s files as they are."""
    blobs = {s.rfilename: s.blob_id for s in head.siblings or []}
    return not stale and all(blobs.get(p) in _blob_oids(staging / p) for p in uploads)


@dataclass(frozen=True)
class PushResult:
    """What one push created: a commit on ``revision`` (or a pull request)."""

    repo_id: str
    commit_oid: str
    commit_url: str
    revision: str
    files: tuple[str, ...]
    pr_url: str | None = None


def resolve_token(token: str | None) -> str:
    """``token``, else ``HF_TOKEN``, else the token saved by ``hf auth login``."""
    token = token or get_token()
    if not token:
        raise MissingTokenError(
            "no Hugging Face token: pass --token (or token=...), set HF_TOKEN, or run `hf auth login`. "
            "Nothing was uploaded."
        )
    return token


def _stage_model(model: torch.nn.Module, folder: Path) -> RunFolder:
    import timm

    from ..init.model_args import forget_init_keywords

    stock = stock_export(model) or {}  # a slim ResNet is saved as stock timm's ResNet with its widths
    timm.models.save_for_hf(forget_init_keywords(model), folder, safe_serialization=True, **stock)
    return load_run_folder(folder)


def _ensure_branch(api: HfApi, repo_id: str, revision: str | None) -> bool:
    """Create branch ``revision`` from main when it does not exist; True when it was created."""
    if revision is None or revision.startswith("refs/pr/"):
        return False
    if revision in {branch.name for branch in api.list_repo_refs(repo_id).branches}:
        return False
    api.create_branch(repo_id, branch=revision)
    return True


def _create_repo(api: HfApi, repo_id: str, *, private: bool) -> tuple[str, bool]:
    """Create ``repo_id`` unless it exists (the Hub answers 409); returns its full id and whether it is new."""
    try:
        return api.create_repo(repo_id, private=private).repo_id, True
    except HfHubHTTPError as err:
        if err.response is None or err.response.status_code != 409:
            raise
    return api.create_repo(repo_id, private=private, exist_ok=True).repo_id, False


def _commit_staged(
    api: HfApi,
    repo_id: str,
    run: RunFolder,
    files: dict[str, Path],
    staging: Path,
    *,
    private: bool,
    revision: str | None,
    create_pr: bool,
    commit_message: str | None,
    license: str,
) -> PushResult:
    """Create the repo (and branch) if needed, add the card to ``staging`` and commit it all at once.

    On failure whatever this push created (the repo, or the branch) is deleted again.
    """
    repo_id, created_repo = _create_repo(api, repo_id, private=private)
    created_branch = _ensure_branch(api, repo_id, None if create_pr else revision)
    target = revision or "main"
    try:
        head = api.repo_info(repo_id, revision=target, files_metadata=create_pr)
        card = render_card(
            run, repo_id=repo_id, files=files, revision=revision, license=license, hub_url=api.endpoint
        )
        card.save(staging / "README.md")
        uploads = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        stale = [
            s.rfilename
            for s in head.siblings or []
            if s.rfilename.startswith(f"{layout.REPORTS}/") and s.rfilename not in uploads
        ]
        if create_pr and _unchanged(head, staging, uploads, stale):
            raise NothingToPushError(
                f"{repo_id!r} at {target} ({head.sha[:8]}) already holds exactly these files; "
                "no pull request was opened (nothing to review)"
            )
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(staging / p)) for p in uploads]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        init = run.summary.get("init", "weights")
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Push {run.architecture} ({init}) with timm-transfusion",
            revision=target,
            create_pr=create_pr,
            parent_commit=head.sha,
        )
    except Exception:
        if created_repo:
            api.delete_repo(repo_id)
        elif created_branch:
            api.delete_branch(repo_id, branch=target)
        raise
    return PushResult(
        repo_id=repo_id,
        commit_oid=info.oid,
        commit_url=info.commit_url,
        revision=target,
        files=tuple(uploads),
        pr_url=info.pr_url,
    )


def push_to_hub(
    run_dir_or_model: str | Path | torch.nn.Module,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    similarity: str | Path | None = None,
    experiment: str | Path | None = None,
    license: str = DEFAULT_LICENSE,
    force: bool = False,
) -> PushResult:
    """Upload a run folder (or a timm model) to ``repo_id`` in a single commit.

    The repo is created if needed (``private`` only applies then); ``revision`` names a branch, created from
    main when missing; ``create_pr`` opens a pull request instead of committing to the branch. The layout is
    described in :mod:`timm_transfusion.hub.layout`. Files under ``reports/`` that this push does not
    contain are deleted in the same commit, so the reports always describe the pushed weights.
    The local run folder is only read. Raises :class:`MissingTokenError` before contacting the Hub when no
    token is found, and :class:`PushError` when the Hub refuses the push (nothing is committed then).
    A similarity report whose model A is not this run is refused unless ``force``.
    """
    token = resolve_token(token)
    from timm_transfusion import __version__

    api = HfApi(token=token, library_name="timm-transfusion", library_version=__version__)
    with TemporaryDirectory(prefix="transfusion-push-") as tmp:
        if isinstance(run_dir_or_model, torch.nn.Module):
            run = _stage_model(run_dir_or_model, Path(tmp) / "model")
            source = f"model {run.architecture}"
        else:
            run = load_run_folder(run_dir_or_model)
            source = f"run folder {str(run_dir_or_model)!r}"
        files = layout.collect_files(run, similarity=similarity, experiment=experiment, force=force)
        files = add_missing_plots(run, files, Path(tmp) / "plots")
        staging = Path(tmp) / "repo"
        layout.stage(files, staging)
        try:
            return _commit_staged(
                api,
                repo_id,
                run,
                files,
                staging,
                private=private,
                revision=revision,
                create_pr=create_pr,
                commit_message=commit_message,
                license=license,
            )
        except (OSError, HFValidationError) as err:  # HTTP, network and upload errors: one failed push
            raise PushError(
                f"pushing {source} to {repo_id!r} failed; nothing was committed and the local files are "
                f"unchanged: {err}"
            ) from err
