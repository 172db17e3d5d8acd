"""The local Hub (tests/hub_server.py) answers like the real Hub: status codes, error codes and file headers."""

from __future__ import annotations

import hashlib
import http.client
import json
from urllib.parse import urlsplit

import pytest
from hub_server import LocalHub

TOKEN = "hf_serverTestToken"


@pytest.fixture(scope="module")
def hub() -> LocalHub:
    server = LocalHub(tokens={TOKEN: "carol"}).start()
    yield server
    server.stop()


def request(url: str, method: str = "GET", body: object = None, token: str | None = None, **headers: str):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = None if body is None else json.dumps(body).encode()
    connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), payload, headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.headers), data


@pytest.fixture(scope="module")
def repo(hub: LocalHub) -> str:
    """carol/files with a regular file and an LFS file, committed through the NDJSON endpoint."""
    status, _, _ = request(
        f"{hub.url}/api/repos/create", "POST", {"name": "files", "organization": None}, TOKEN
    )
    assert status == 200
    weights = b"\x00\x01weights" * 100
    oid = hashlib.sha256(weights).hexdigest()
    status, _, data = request(
        f"{hub.url}/carol/files.git/info/lfs/objects/batch",
        "POST",
        {"operation": "upload", "objects": [{"oid": oid, "size": len(weights)}]},
        TOKEN,
    )
    upload = json.loads(data)["objects"][0]["actions"]["upload"]["href"]
    parts = urlsplit(upload)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("PUT", parts.path, weights)
    assert connection.getresponse().status == 200
    lines = [
        {"key": "header", "value": {"summary": "add files", "description": ""}},
        {"key": "file", "value": {"path": "config.json", "content": "eyJhIjogMX0=", "encoding": "base64"}},
        {
            "key": "lfsFile",
            "value": {"path": "model.safetensors", "algo": "sha256", "oid": oid, "size": len(weights)},
        },
    ]
    parts = urlsplit(hub.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    ndjson = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    connection.request("POST", "/api/models/carol/files/commit/main", ndjson, headers)
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["commitOid"]
    return "carol/files"


def test_regular_file_resolves_with_commit_and_etag(hub: LocalHub, repo: str) -> None:
    status, headers, data = request(f"{hub.url}/{repo}/resolve/main/config.json")
    assert status == 200 and data == b'{"a": 1}'
    assert headers["X-Repo-Commit"] == hub.repo(repo).branches["main"]
    assert headers["ETag"] == '"' + hashlib.sha1(b"blob 8\0" + data).hexdigest() + '"'  # git blob id


def test_lfs_file_redirects_to_storage_with_linked_size_and_etag(hub: LocalHub, repo: str) -> None:
    status, headers, _ = request(f"{hub.url}/{repo}/resolve/main/model.safetensors", "HEAD")
    content = hub.files(repo)["model.safetensors"]
    assert status == 302 and headers["X-Linked-Size"] == str(len(content))
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert urlsplit(headers["Location"]).port != urlsplit(hub.url).port  # another origin, like the Hub's CDN
    assert request(headers["Location"])[2] == content


@pytest.mark.parametrize(
    ("path", "token", "status", "code"),
    [
        ("carol/files/resolve/main/missing.bin", None, 404, "EntryNotFound"),
        ("carol/files/resolve/no-branch/config.json", None, 404, "RevisionNotFound"),
        ("carol/nothing/resolve/main/config.json", None, 401, "RepoNotFound"),
        ("carol/nothing/resolve/main/config.json", TOKEN, 404, "RepoNotFound"),
    ],
)
def test_errors_carry_the_hubs_status_and_error_code(
    hub: LocalHub, repo: str, path: str, token: str | None, status: int, code: str
) -> None:
    got_status, headers, _ = request(f"{hub.url}/{path}", "HEAD", token=token)
    assert (got_status, headers.get("X-Error-Code")) == (status, code)


def test_writes_need_a_valid_token(hub: LocalHub, repo: str) -> None:
    assert request(f"{hub.url}/api/repos/create", "POST", {"name": "x"})[0] == 401
    assert request(f"{hub.url}/api/repos/create", "POST", {"name": "x"}, "hf_nope")[1]["X-Error-Message"] == (
        "Invalid credentials in Authorization header"
    )
    assert request(f"{hub.url}/api/repos/create", "POST", {"name": "files"}, TOKEN)[0] == 409
