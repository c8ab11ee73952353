"""A local stand-in for the Hugging Face Hub's write API, recording every request (for ``sami-kit push`` tests).

``huggingface_hub`` is pointed at it with ``HF_ENDPOINT``; it answers the calls an upload makes — ``create_repo``
(``POST /api/repos/create``), ``create_branch`` (``POST /api/models/<repo>/branch/<name>``), the preupload check
(``POST /api/models/<repo>/preupload/<rev>``), the model card's metadata check (``POST /api/validate-yaml``),
the commit (``POST /api/models/<repo>/commit/<rev>``, NDJSON) and,
for files it marks ``lfs``, the Git LFS batch API (``POST /<repo>.git/info/lfs/objects/batch``) and the upload
(``PUT /lfs-upload/<oid>``) — and keeps the committed files, so a test can compare them with the run directory.
``lfs_suffixes`` decides which files go the LFS way (none by default: every file is then committed inline, which
needs no Xet or LFS storage whichever of the two the client prefers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HubState:
    lfs_suffixes: tuple[str, ...] = ()
    status_for_create: int = 200
    requests: list[Recorded] = field(default_factory=list)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    branches: set[tuple[str, str]] = field(default_factory=set)
    #: (repo, revision) -> path -> bytes
    files: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)


def _handler(state: HubState, base_url: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, payload: Any = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            body = self._body()
            state.requests.append(Recorded("PUT", self.path, dict(self.headers), body))
            if self.path.startswith("/lfs-upload/"):
                oid = self.path.rsplit("/", 1)[1]
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._send(400, {"error": "sha256 mismatch"})
                state.lfs_objects[oid] = body
                return self._send(200, {})
            self._send(404, {"error": "not found"})

        def do_GET(self) -> None:
            state.requests.append(Recorded("GET", self.path, dict(self.headers), b""))
            self._send(404, {"error": f"{self.path} not found"})

        def do_POST(self) -> None:  # noqa: C901 - one branch per endpoint
            body = self._body()
            state.requests.append(Recorded("POST", self.path, dict(self.headers), body))
            path = self.path.split("?", 1)[0]
            if not self.headers.get("authorization", "").startswith("Bearer "):
                return self._send(401, {"error": "Invalid credentials in Authorization header"})
            if path == "/api/validate-yaml":  # upload_folder checks a README.md's metadata first
                import yaml

                content = json.loads(body)["content"]
                try:
                    yaml.safe_load(content.split("---")[1]) if content.startswith("---") else None
                except yaml.YAMLError as exc:
                    return self._send(400, {"errors": [{"message": str(exc)}]})
                return self._send(200, {"errors": [], "warnings": []})
            if path == "/api/repos/create":
                if state.status_for_create != 200:
                    return self._send(state.status_for_create, {"error": "You don't have the rights to create "
                                                                         "a model under this namespace"})
                data = json.loads(body)
                repo = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                private = bool(data.get("private")) or data.get("visibility") == "private"
                state.repos.setdefault(repo, {"private": private})
                return self._send(200, {"url": f"{base_url[0]}/{repo}", "name": repo, "id": repo})
            parts = path.strip("/").split("/")
            if path.endswith(".git/info/lfs/objects/batch"):
                data = json.loads(body)
                return self._send(200, {"transfer": "basic", "objects": [
                    {"oid": o["oid"], "size": o["size"],
                     "actions": {"upload": {"href": f"{base_url[0]}/lfs-upload/{o['oid']}"}}}
                    for o in data["objects"]]})
            if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models":
                repo, action, revision = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
                if repo not in state.repos:
                    return self._send(404, {"error": "Repository not found"})
                if action == "branch":
                    state.branches.add((repo, revision))
                    return self._send(200, {})
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [
                        {"path": f["path"], "shouldIgnore": False,
                         "uploadMode": "lfs" if f["path"].endswith(state.lfs_suffixes) and state.lfs_suffixes
                         else "regular"} for f in files]})
                if action == "commit":
                    return self._commit(repo, revision, body)
            self._send(404, {"error": f"{path} not found"})

        def _commit(self, repo: str, revision: str, body: bytes) -> None:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            target = state.files.setdefault((repo, revision), {})
            commit: dict[str, Any] = {"repo": repo, "revision": revision, "files": [], "lfs": []}
            for line in lines:
                value = line["value"]
                if line["key"] == "header":
                    commit["summary"] = value["summary"]
                elif line["key"] == "file":
                    target[value["path"]] = base64.b64decode(value["content"])
                    commit["files"].append(value["path"])
                elif line["key"] == "lfsFile":
                    if value["oid"] not in state.lfs_objects:
                        return self._send(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                    target[value["path"]] = state.lfs_objects[value["oid"]]
                    commit["lfs"].append(value["path"])
            state.commits.append(commit)
            oid = hashlib.sha1(body).hexdigest()
            self._send(200, {"commitUrl": f"{base_url[0]}/{repo}/commit/{oid}", "commitOid": oid,
                             "pullRequestUrl": None})

    return Handler


class HubServer:
    """``with HubServer() as hub: ...`` — ``hub.url`` is the endpoint, ``hub.state`` what it received."""

    def __init__(self, **state: Any) -> None:
        self.state = HubState(**state)
        self._base: list[str] = [""]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state, self._base))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._base[0] = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
