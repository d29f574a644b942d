"""Running and saving a chapter in JupyterLab leaves its .py byte-identical.

JupyterLab saves through the Jupyter server's contents API, where jupytext's contents
manager also writes the paired ``.py``, with the settings it finds in the served folder
(``chapters/jupytext.toml``). This test does what the lab does, without a browser: it starts
a Jupyter server on a copy of a chapter, reads the notebook through the contents API, runs it
in a kernel (quick mode), saves it back through the API (once part-way, as an autosave
taken mid-run would, and once at the end) and compares the ``.py`` with the repository's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "00_setup"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET", body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                 headers={"Authorization": f"token {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


@pytest.fixture
def server(tmp_path):
    for f in (f"{CHAPTER}.py", f"{CHAPTER}.ipynb", "jupytext.toml"):
        shutil.copy(ROOT / "chapters" / f, tmp_path / f)
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path}", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, DMLIB_QUICK="1"))
    try:
        end = time.monotonic() + 60
        while True:  # wait for the server to answer (an event, polled)
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    pytest.fail(f"jupyter server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield base, token, tmp_path
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.mark.slow
def test_running_and_saving_in_the_lab_keeps_the_py_byte_identical(server):
    from nbclient import NotebookClient

    base, token, folder = server
    original = (ROOT / "chapters" / f"{CHAPTER}.py").read_bytes()
    path = f"/api/contents/{CHAPTER}.ipynb"
    model = _api(base, token, path + "?content=1")
    nb = nbformat.from_dict(model["content"])
    for cell in nb.cells:  # a fresh run, as after "Restart and clear outputs"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    half = len(nb.cells) // 2
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
            if i == half:  # an autosave while the chapter runs
                _api(base, token, path, "PUT", {"type": "notebook", "format": "json",
                                                "content": json.loads(json.dumps(nb))})
                assert (folder / f"{CHAPTER}.py").read_bytes() == original, \
                    "an autosave mid-run rewrote the .py"
    saved = _api(base, token, path, "PUT", {"type": "notebook", "format": "json",
                                            "content": json.loads(json.dumps(nb))})
    assert saved["type"] == "notebook"
    assert (folder / f"{CHAPTER}.py").read_bytes() == original, \
        "saving the run chapter through the contents API rewrote its .py"
    back = nbformat.from_dict(_api(base, token, path + "?content=1")["content"])
    assert all(c.execution_count for c in back.cells if c.cell_type == "code" and c.source.strip())
