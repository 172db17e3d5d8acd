"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only).

It speaks the endpoints the real ``huggingface_hub`` client uses to create a repo, upload a folder in one
commit (preupload -> LFS batch "basic" transfer -> NDJSON commit), make branches and pull requests, and
download files (``HEAD``/``GET`` ``/resolve``), with the Hub's status codes and headers: ``X-Error-Code``
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), ``X-Repo-Commit``, ``ETag``, and for LFS
files a ``302`` to a separate storage origin carrying ``X-Linked-Etag`` / ``X-Linked-Size``, as the Hub's
CDN redirect does. Xet storage is not implemented: clients must run with ``HF_HUB_DISABLE_XET=1``.

    server = LocalHub(tokens={"hf_secret": "alice"}).start()
    os.environ["HF_ENDPOINT"] = server.url
    ...
    server.stop()
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# The Hub's default .gitattributes marks these as LFS; binary or large content is LFS too.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.npz", "*.zip")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)


def git_blob_oid(content: bytes) -> str:
    """git's object id of a blob: sha1 of ``b"blob <size>\\0" + content``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class RepoFile:
    """A file at one commit: inline content (regular) or a pointer to LFS storage."""

    size: int
    content: bytes | None = None
    lfs_sha256: str | None = None

    @property
    def blob_oid(self) -> str:
        if self.lfs_sha256 is not None:
            return git_blob_oid(lfs_pointer(self.lfs_sha256, self.size))
        return git_blob_oid(self.content or b"")


@dataclass
class Commit:
    oid: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    files: dict[str, RepoFile]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        match = re.fullmatch(r"refs/pr/(\d+)", revision)
        if match and int(match.group(1)) in self.pull_requests:
            return self.commits[self.pull_requests[int(match.group(1))]]
        matches = [oid for oid in self.commits if len(revision) >= 7 and oid.startswith(revision)]
        return self.commits[matches[0]] if len(matches) == 1 else None

    def history(self, oid: str) -> list[Commit]:
        out = []
        while oid:
            commit = self.commits[oid]
            out.append(commit)
            oid = commit.parents[0] if commit.parents else ""
        return out


class HubError(Exception):
    """An HTTP error reply, with the Hub's ``X-Error-Code`` where it sends one."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class HubState:
    tokens: dict[str, str]
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    fail_commits: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    endpoint: str = ""
    storage: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _new_commit(
    repo: Repo, files: dict[str, RepoFile], title: str, message: str, author: str, parent: str
) -> Commit:
    digest = hashlib.sha1(f"{repo.repo_id}\n{parent}\n{title}\n{len(repo.commits)}\n{_now()}".encode())
    for path in sorted(files):
        digest.update(f"{path}:{files[path].blob_oid}\n".encode())
    commit = Commit(digest.hexdigest(), [parent] if parent else [], title, message, author, _now(), files)
    repo.commits[commit.oid] = commit
    return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HubHTTPServer
    body: bytes = b""

    # -- plumbing ---------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    @property
    def state(self) -> HubState:
        return self.server.state

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        with self.state.lock:
            self.state.requests.append((self.command, self.path, status))

    def _json(self, data: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._reply(status, json.dumps(data).encode(), headers)

    def _dispatch(self) -> None:
        self.body = self._read_body()  # always drain it: the connection is kept alive for the next request
        authorization = self.headers.get("Authorization")
        if authorization:
            with self.state.lock:
                self.state.authorizations.append(authorization)
        try:
            self.route(urlsplit(self.path))
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json({"error": err.message}, err.status, headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def user(self, required: bool = False) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header:
            if required:
                raise HubError(401, "Invalid username or password.")
            return None
        token = header.removeprefix("Bearer ").strip()
        if token not in self.state.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.state.tokens[token]

    def readable_repo(self, repo_id: str) -> Repo:
        user = self.user()
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, repo_id: str) -> tuple[Repo, str]:
        user = self.user(required=True)
        repo = self.readable_repo(repo_id)
        if repo_id.split("/")[0] != user:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo, user

    @staticmethod
    def commit_at(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- routes -----------------------------------------------------------------------------------------
    def route(self, url) -> None:
        parts = url.path.strip("/").split("/")
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if self.server.is_storage:
            return self.storage(parts)
        if parts[:2] == ["api", "whoami-v2"]:
            user = self.user(required=True)
            return self._json({"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})
        if parts[:3] == ["api", "repos", "create"] and self.command == "POST":
            return self.create_repo(json.loads(self.body))
        if parts[:3] == ["api", "repos", "delete"] and self.command == "DELETE":
            return self.delete_repo(json.loads(self.body))
        if parts[:2] == ["api", "validate-yaml"] and self.command == "POST":
            return self.validate_yaml(json.loads(self.body))
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            return self.api_model(repo_id, [unquote(p) for p in rest], query)
        if len(parts) >= 3 and parts[1].endswith(".git") and parts[2:5] == ["info", "lfs", "objects"]:
            return self.lfs(f"{parts[0]}/{parts[1].removesuffix('.git')}", parts[5:])
        if len(parts) >= 5 and parts[2] == "resolve" and self.command in ("GET", "HEAD"):
            return self.resolve("/".join(parts[:2]), unquote(parts[3]), unquote("/".join(parts[4:])))
        raise HubError(404, f"Not found: {url.path}")

    def create_repo(self, payload: dict) -> None:
        user = self.user(required=True)
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        if payload.get("type", "model") != "model":
            raise HubError(400, "This test hub only hosts model repos")
        if namespace != user:
            raise HubError(
                403, f"You don't have the rights to create a model under the namespace {namespace!r}"
            )
        url = f"{self.state.endpoint}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                return self._json({"error": "You already created this model repo", "url": url}, 409)
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_id, private)
            files = {".gitattributes": RepoFile(len(GITATTRIBUTES), GITATTRIBUTES.encode())}
            repo.branches["main"] = _new_commit(repo, files, "initial commit", "", user, "").oid
            self.state.repos[repo_id] = repo
        self._json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def delete_repo(self, payload: dict) -> None:
        user = self.user(required=True)
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        with self.state.lock:
            self.writable_repo(repo_id)
            del self.state.repos[repo_id]
        self._reply(200)

    def validate_yaml(self, payload: dict) -> None:
        match = re.match(r"^---\n(.*?)\n---\n", payload.get("content", ""), re.DOTALL)
        errors = []
        if match:
            try:
                if not isinstance(yaml.safe_load(match.group(1)), dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as err:
                errors.append({"message": f"invalid YAML: {err}"})
        self._json({"errors": errors, "warnings": []}, 400 if errors else 200)

    def api_model(self, repo_id: str, rest: list[str], query: dict[str, str]) -> None:
        if not rest or rest[0] == "revision":
            repo = self.readable_repo(repo_id)
            return self.model_info(repo, self.commit_at(repo, rest[1] if rest else "main"))
        head = rest[0]
        if head == "preupload" and self.command == "POST":
            return self.preupload(repo_id, rest[1], json.loads(self.body), "create_pr" in query)
        if head == "commit" and self.command == "POST":
            return self.commit(repo_id, rest[1], self.body, "create_pr" in query)
        if head == "branch" and self.command == "POST":
            return self.create_branch(repo_id, "/".join(rest[1:]), json.loads(self.body or b"{}"))
        if head == "branch" and self.command == "DELETE":
            return self.delete_branch(repo_id, "/".join(rest[1:]))
        repo = self.readable_repo(repo_id)
        if head == "refs":
            return self.refs(repo, "include_prs" in query)
        if head == "commits":
            commit = self.commit_at(repo, rest[1] if len(rest) > 1 else "main")
            return self._json([self._commit_json(c) for c in repo.history(commit.oid)])
        if head == "tree":
            commit = self.commit_at(repo, rest[1])
            prefix = "/".join(rest[2:])
            return self._json(self._tree(commit, prefix, query.get("recursive") in ("1", "true", "True")))
        raise HubError(404, f"Not found: {head}")

    def model_info(self, repo: Repo, commit: Commit) -> None:
        self._json(
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "lastModified": commit.date,
                "tags": [],
                "library_name": None,
                "siblings": [
                    {"rfilename": path, "size": f.size, "blobId": f.blob_oid}
                    for path, f in sorted(commit.files.items())
                ],
            }
        )

    @staticmethod
    def _commit_json(commit: Commit) -> dict:
        return {
            "id": commit.oid,
            "title": commit.title,
            "message": commit.message,
            "authors": [{"user": commit.author}],
            "date": commit.date,
        }

    @staticmethod
    def _tree(commit: Commit, prefix: str, recursive: bool) -> list[dict]:
        entries, folders = [], set()
        for path, repo_file in sorted(commit.files.items()):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            relative = path[len(prefix.rstrip("/")) + 1 :] if prefix else path
            if "/" in relative and not recursive:
                folders.add(path[: len(path) - len(relative)] + relative.split("/")[0])
                continue
            entry = {"type": "file", "oid": repo_file.blob_oid, "size": repo_file.size, "path": path}
            if repo_file.lfs_sha256:
                entry["lfs"] = {
                    "oid": repo_file.lfs_sha256,
                    "size": repo_file.size,
                    "pointerSize": len(lfs_pointer(repo_file.lfs_sha256, repo_file.size)),
                }
            entries.append(entry)
        return [
            {"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)
        ] + entries

    def refs(self, repo: Repo, include_prs: bool) -> None:
        data = {
            "branches": [
                {"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()
            ],
            "tags": [],
            "converts": [],
        }
        if include_prs:
            data["pullRequests"] = [
                {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": oid}
                for n, oid in repo.pull_requests.items()
            ]
        self._json(data)

    def create_branch(self, repo_id: str, branch: str, payload: dict) -> None:
        with self.state.lock:
            repo, _ = self.writable_repo(repo_id)
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = self.commit_at(repo, payload.get("startingPoint") or "main").oid
        self._json({})

    def delete_branch(self, repo_id: str, branch: str) -> None:
        with self.state.lock:
            repo, _ = self.writable_repo(repo_id)
            if branch == "main" or branch not in repo.branches:
                raise HubError(
                    400 if branch == "main" else 404, f"Cannot delete branch {branch!r}", "RevisionNotFound"
                )
            del repo.branches[branch]
        self._json({})

    def preupload(self, repo_id: str, revision: str, payload: dict, create_pr: bool) -> None:
        repo, _ = self.writable_repo(repo_id)
        commit = self.commit_at(repo, revision)
        files = []
        for item in payload["files"]:
            sample = base64.b64decode(item["sample"])
            is_lfs = (
                any(fnmatch.fnmatch(item["path"].split("/")[-1], p) for p in LFS_PATTERNS)
                or item["size"] >= LFS_SIZE_THRESHOLD
                or b"\0" in sample
            )
            existing = commit.files.get(item["path"])
            oid = None if existing is None else (existing.lfs_sha256 if is_lfs else existing.blob_oid)
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if is_lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json({"files": files, "commitOid": commit.oid})

    def lfs(self, repo_id: str, rest: list[str]) -> None:
        self.writable_repo(repo_id)
        payload = json.loads(self.body)
        if rest == ["batch"]:
            objects = []
            for obj in payload["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in self.state.lfs_objects:
                    entry["actions"] = {
                        "upload": {"href": f"{self.state.storage}/{obj['oid']}", "header": {}},
                        "verify": {"href": f"{self.state.endpoint}/{repo_id}.git/info/lfs/objects/verify"},
                    }
                objects.append(entry)
            return self._json(
                {"transfer": "basic", "objects": objects},
                headers={"Content-Type": "application/vnd.git-lfs+json"},
            )
        if rest == ["verify"]:
            stored = self.state.lfs_objects.get(payload["oid"])
            if stored is None or len(stored) != payload["size"]:
                raise HubError(404, f"LFS object {payload['oid']} not found")
            return self._json({"message": "Everything is fine"})
        raise HubError(404, "Unknown LFS endpoint")

    def storage(self, parts: list[str]) -> None:
        if len(parts) != 2 or parts[0] != "lfs":
            raise HubError(404, "NoSuchKey")
        oid = parts[1]
        if self.command == "PUT":
            content = self.body
            if hashlib.sha256(content).hexdigest() != oid:
                raise HubError(400, "Content does not match its sha256")
            with self.state.lock:
                self.state.lfs_objects[oid] = content
            return self._reply(200, b"", {"ETag": f'"{hashlib.md5(content).hexdigest()}"'})
        content = self.state.lfs_objects.get(oid)
        if content is None:
            raise HubError(404, "NoSuchKey")
        self._send_content(content, {"ETag": f'"{oid}"', "Content-Type": "application/octet-stream"})

    def _send_content(self, content: bytes, headers: dict[str, str]) -> None:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            return self._reply(206, content[start : end + 1], {**headers, "Accept-Ranges": "bytes"})
        self._reply(200, content, {**headers, "Accept-Ranges": "bytes"})

    def commit(self, repo_id: str, revision: str, body: bytes, create_pr: bool) -> None:
        with self.state.lock:
            repo, user = self.writable_repo(repo_id)
            parent = self.commit_at(repo, revision)
            if self.headers.get("Content-Type") != "application/x-ndjson":
                raise HubError(400, "Expected an application/x-ndjson commit payload")
            if self.state.fail_commits:
                status, message = self.state.fail_commits.pop(0)
                raise HubError(status, message)
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "The first line of a commit payload must be its header")
            header = lines[0]["value"]
            if header.get("parentCommit") and not parent.oid.startswith(header["parentCommit"]):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    content = base64.b64decode(value["content"])
                    files[value["path"]] = RepoFile(len(content), content=content)
                elif key == "lfsFile":
                    stored = self.state.lfs_objects.get(value["oid"])
                    if stored is None:
                        raise HubError(422, f"LFS file {value['path']} was not uploaded (oid {value['oid']})")
                    files[value["path"]] = RepoFile(len(stored), lfs_sha256=value["oid"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    files = {
                        p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")
                    }
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            commit = _new_commit(
                repo, files, header["summary"], header.get("description", ""), user, parent.oid
            )
            pr_url = None
            if create_pr:
                number = max([0, *repo.pull_requests]) + 1
                repo.pull_requests[number] = commit.oid
                pr_url = f"{self.state.endpoint}/{repo_id}/discussions/{number}"
            elif re.fullmatch(r"refs/pr/\d+", revision):
                repo.pull_requests[int(revision.rsplit("/", 1)[1])] = commit.oid
            else:
                repo.branches[revision] = commit.oid
        self._json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.state.endpoint}/{repo_id}/commit/{commit.oid}",
                "commitMessage": header["summary"],
                "pullRequestUrl": pr_url,
            }
        )

    def resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self.readable_repo(repo_id)
        commit = self.commit_at(repo, revision)
        repo_file = commit.files.get(path)
        if repo_file is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{repo_file.blob_oid}"'}
        if repo_file.lfs_sha256 is not None:
            headers.update(
                {
                    "Location": f"{self.state.storage}/{repo_file.lfs_sha256}",
                    "X-Linked-Etag": f'"{repo_file.lfs_sha256}"',
                    "X-Linked-Size": str(repo_file.size),
                }
            )
            return self._reply(302, b"", headers)
        self._send_content(repo_file.content or b"", {**headers, "Content-Type": "text/plain; charset=utf-8"})


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState, is_storage: bool):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state, self.is_storage = state, is_storage


class LocalHub:
    """The Hub API on one port and its LFS storage ("CDN") on another, sharing one in-memory state."""

    def __init__(self, tokens: dict[str, str]):
        self.state = HubState(tokens=dict(tokens))
        self._servers = [
            _HubHTTPServer(self.state, is_storage=False),
            _HubHTTPServer(self.state, is_storage=True),
        ]
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.state.endpoint = self.url
        self.state.storage = f"http://127.0.0.1:{self._servers[1].server_address[1]}/lfs"
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self._servers]

    def start(self) -> LocalHub:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def fail_next_commit(
        self, status: int = 500, message: str = "Internal Error - We're working hard to fix this"
    ) -> None:
        """Make the next ``/commit`` call fail with ``status`` (after preupload and LFS upload succeeded)."""
        with self.state.lock:
            self.state.fail_commits.append((status, message))

    def repo(self, repo_id: str) -> Repo:
        return self.state.repos[repo_id]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Every file of ``repo_id`` at ``revision`` with its content."""
        with self.state.lock:
            commit = self.state.repos[repo_id].resolve(revision)
            assert commit is not None, f"no revision {revision!r} in {repo_id}"
            return {
                path: f.content if f.lfs_sha256 is None else self.state.lfs_objects[f.lfs_sha256]
                for path, f in commit.files.items()
            }
