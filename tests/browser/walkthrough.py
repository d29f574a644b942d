"""The JupyterLab walkthrough as a student meets it, in a real browser (`make test-browser`).

Starts JupyterLab on a free local port with a token, on a copy of ``chapters/`` (the working
tree is never written), and drives the system Chromium through Playwright. For every
chapter it

1. opens the notebook fresh (untrusted, as after a clone) and checks the saved view: no raw
   widget repr, no "0%" progress bar, every image loaded, the animation shown as an image;
2. runs all cells with the course kernel in quick mode (``DMLIB_QUICK=1``), and fails on any
   error output;
3. saves it from the browser and checks that the paired ``.py`` is byte-identical to the
   repository's;
4. moves one widget (where there is one) and waits for its figure to change;
5. plays the animation (chapters 6 and 7) and waits for its frame to change;
6. adds a cell that gives one exercise's check a wrong function, then the right one, and
   waits for the ``FAIL`` line with its hint and for ``PASS``;

and saves screenshots under ``build/browser/`` (``NN_saved.png``, ``NN_run.png``, ...). Every
wait is on the kernel's state (the server's REST API) or on the DOM, never a fixed sleep.
It also fails if the page asks for anything outside the local server (a CDN, fonts).

Run it with ``make test-browser``; the browser is Debian's ``chromium`` (or ``$CHROMIUM``).
This file is not named ``test_*.py`` so that ``make test`` does not collect it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "browser"
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage"]
RUN_TIMEOUT_S = int(os.environ.get("BROWSER_RUN_TIMEOUT", "240"))  # one chapter, quick mode
RAW_REPR = r"^(interactive|VBox|HBox|Box|Output|IntSlider|FloatSlider|Dropdown|SelectionSlider)\(|\b0%\|"


def find_chromium() -> str:
    """The system Chromium: $CHROMIUM, else chromium / chromium-browser / google-chrome on PATH."""
    cand = [os.environ.get("CHROMIUM", "")] + [shutil.which(n) or "" for n in
                                                ("chromium", "chromium-browser", "google-chrome")]
    for c in cand:
        if c and os.access(c, os.X_OK):
            return c
    pytest.fail("no Chromium found: install Debian's package (`sudo apt-get install chromium`) "
                "or set CHROMIUM=/path/to/chrome", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on a copy of the chapters, and its REST API."""

    def __init__(self):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.work = OUT / "lab"
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(ROOT / "chapters", self.work / "chapters",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        settings = self.work / "settings"
        for plugin, value in {
            # every cell in the DOM (no virtual scrolling), so that checks see all outputs
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            # no news or update checks: nothing leaves the machine
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                           "checkForUpdates": False},
        }.items():
            f = settings / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        env = dict(os.environ, DMLIB_QUICK="1", JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(self.work / "workspaces"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("MPLBACKEND", None)  # the kernel draws inline
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--port-retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.work / 'chapters'}", "--LabApp.expose_app_in_browser=True",
               "--NotebookNotary.db_file=:memory:", "--allow-root"]
        self.log = open(OUT / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.wait(lambda: self._get("/api/status") is not None, 60, "JupyterLab to start")

    def _get(self, path: str):
        sep = "&" if "?" in path else "?"
        try:
            with urllib.request.urlopen(f"{self.base}{path}{sep}token={self.token}", timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited; see {OUT / 'jupyterlab.log'}")
            return None

    def start_kernel(self, path: str) -> None:
        """Start the course kernel for ``path`` (a session, as JupyterLab makes on opening it),
        so that it has imported torch by the time the chapter is opened."""
        body = json.dumps({"path": path, "name": path, "type": "notebook",
                           "kernel": {"name": "dmlib-course"}}).encode()
        req = urllib.request.Request(f"{self.base}/api/sessions", data=body, method="POST",
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).close()

    def _delete(self, path: str) -> None:
        req = urllib.request.Request(f"{self.base}{path}?token={self.token}", method="DELETE")
        try:
            urllib.request.urlopen(req, timeout=30).close()
        except OSError:
            pass

    def wait(self, cond, timeout: float, what: str, poll: float = 0.2):
        """Poll ``cond()`` until it is truthy (an event wait on server state, not a sleep)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = cond()
            if v:
                return v
            time.sleep(poll)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def session(self, path: str):
        return next((s for s in self._get("/api/sessions") or [] if s["path"] == path), None)

    def kernel_state(self, path: str) -> str | None:
        s = self.session(path)
        k = s and self._get(f"/api/kernels/{s['kernel']['id']}")
        return k and k.get("execution_state")

    def wait_idle(self, path: str, timeout: float = 120) -> None:
        self.wait(lambda: self.kernel_state(path) == "idle", timeout, f"the kernel of {path} to be idle")

    def notebook(self, path: str) -> dict:
        return self._get(f"/api/contents/{path}?content=1")["content"]

    def shutdown(self, path: str) -> None:
        s = self.session(path)
        if s:
            self._delete(f"/api/sessions/{s['id']}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def lab():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    server = Lab()
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=BROWSER_ARGS)
        yield b
        b.close()


# ------------------------------------------------------------------------------------------
# DOM helpers (run in the page)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

SAVED_VIEW_JS = """(raw) => {
  const re = new RegExp(raw, 'm');
  const outs = [...document.querySelectorAll('%(p)s .jp-OutputArea-output')];
  const imgs = [...document.querySelectorAll('%(p)s .jp-OutputArea-output img')];
  return {
    outputs: outs.length,
    raw: outs.map(o => o.innerText).filter(t => re.test(t)).map(t => t.slice(0, 90)),
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    gifs: imgs.filter(i => i.src.startsWith('data:image/gif') && i.naturalWidth > 0)
              .map(i => i.getBoundingClientRect().width),
    players: document.querySelectorAll('%(p)s .anim-controls').length,
  };
}""" % {"p": PANEL}

# Run All is done when every code cell has an execution count and none is queued or running
# (prompt "[*]"); it stops early at an error output, which this reports at once.
RUN_STATE_JS = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cells = nb.model.cells;
  let pending = 0;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (let j = 0; j < c.outputs.length; j++) {
      if (c.outputs.get(j).type === 'error') return 'error in cell ' + i;
    }
    if (c.sharedModel.getSource().trim() && c.executionCount == null) pending++;
  }
  const busy = [...document.querySelectorAll('%(p)s .jp-InputPrompt')]
    .some(p => p.innerText.includes('*'));
  return pending === 0 && !busy ? 'done' : false;
}""" % {"p": PANEL}


@pytest.fixture(scope="module")
def app(lab, browser):
    """One JupyterLab page for all chapters (loading the app once), recording any request
    that leaves the local server (there is no network here: such a request would fail)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside, errors = [], []
    page = ctx.new_page()
    page.on("request", lambda r: None if r.url.startswith((lab.base, "data:", "blob:"))
            else outside.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab.base}/lab/workspaces/browser-test?reset&token={lab.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=120_000)
    page.wait_for_selector(".jp-DirListing-item", timeout=120_000)
    page.outside, page.errors = outside, errors
    yield page
    ctx.close()


def _open(page, path: str) -> None:
    """Open ``path`` as a student does (the file browser's open), wait until it is shown."""
    page.evaluate("async (p) => { const w = await window.jupyterapp.commands.execute("
                  "'docmanager:open', {path: p}); await w.context.ready; await w.revealed; }", path)
    page.wait_for_function(
        "(p) => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.context && w.context.path === p && w.context.isReady; }", arg=path,
        timeout=60_000)
    page.wait_for_selector(f"{PANEL} .jp-Cell", timeout=60_000)


def _close(page) -> None:
    """Close the current notebook without saving (the exercise cell stays out of the file)."""
    page.evaluate("() => { const w = window.jupyterapp.shell.currentWidget;"
                  " if (w) { w.context.model.dirty = false; w.dispose(); } }")


def _command(page, cmd: str, args: dict | None = None):
    return page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a || {})", [cmd, args])


def _shot(page, name: str, what: str, locator=None) -> Path:
    path = OUT / f"{name[:2]}_{what}.png"
    if locator is not None:
        locator.scroll_into_view_if_needed()
    page.screenshot(path=str(path))
    return path


def _first_check(py_source: str) -> tuple[str, str]:
    m = re.search(r"^checks\.(check_\w+)\((\w+)\)$", py_source, re.M)
    assert m, "no exercise check found"
    return m.group(1), m.group(2)


EXERCISE_CELL = """\
# browser test: a wrong answer (2 x the right one + 1), then the right one
_right = {fn}
_twice = lambda r: tuple(_twice(x) for x in r) if isinstance(r, tuple) else 2 * r + 1
checks.{check}(lambda *a, **k: _twice(_right(*a, **k)))
checks.{check}(_right)"""


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_in_jupyterlab(lab, app, name):
    page, path = app, f"{name}.ipynb"
    py_before = (ROOT / "chapters" / f"{name}.py").read_bytes()
    _open(page, path)
    del page.outside[:]
    try:
        # 1. the saved view, before anything runs (the notebook is untrusted, as after a clone)
        page.wait_for_function("() => [...document.querySelectorAll('%s .jp-OutputArea-output img')]"
                               ".every(i => i.complete)" % PANEL, timeout=30_000)
        view = page.evaluate(SAVED_VIEW_JS, RAW_REPR)
        _shot(page, name, "saved_top")
        widget_cell = page.locator(f"{PANEL} .jp-CodeCell").filter(
            has_text=re.compile(r"widgets\.(interact\(|VBox\()")).first
        if widget_cell.count():
            _shot(page, name, "saved_widget", widget_cell.locator(".jp-OutputArea").first)
        anim = page.locator(f"{PANEL} .jp-OutputArea-output img[src^='data:image/gif']")
        if anim.count():
            _shot(page, name, "saved_animation", anim.first)
        assert view["outputs"] > 0, "the chapter shows no saved outputs"
        assert not view["raw"], f"raw widget reprs or empty progress bars in the saved view: {view['raw']}"
        assert view["images"] > 0 and view["broken"] == 0, f"images missing or broken: {view}"
        if name.startswith(("06", "07")):
            assert view["gifs"], "the animation is not shown as an image before running"
            assert min(view["gifs"]) >= 300, f"the animation is too small: {view['gifs']} px"
            assert view["players"] == 0, "an (untrusted, inert) animation player is saved"

        # 2. run all in quick mode with the course kernel
        lab.wait_idle(path, 120)
        nxt = CHAPTERS.index(name) + 1
        if nxt < len(CHAPTERS):  # the next chapter's kernel starts while this one runs
            lab.start_kernel(f"{CHAPTERS[nxt]}.ipynb")
        t0 = time.monotonic()
        _command(page, "notebook:clear-all-cell-outputs")  # execution counts too
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        state = page.wait_for_function(RUN_STATE_JS, timeout=RUN_TIMEOUT_S * 1000,
                                       polling=250).json_value()
        lab.wait_idle(path, 60)
        run_s = time.monotonic() - t0

        # 3. save from the browser; no error output; every cell ran; the .py is unchanged
        _command(page, "docmanager:save")
        if state != "done":
            _shot(page, name, "run_error")
        nb = lab.notebook(path)
        errs = [(i, "\n".join(o.get("traceback", []))[-1500:]) for i, c in enumerate(nb["cells"])
                for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errs, f"error outputs after Run All: {errs}"
        not_run = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
                   and c["source"].strip() and c.get("execution_count") is None]
        assert not not_run, f"cells not executed by Run All: {not_run}"
        py_after = (lab.work / "chapters" / f"{name}.py").read_bytes()
        assert py_after == py_before, f"saving in JupyterLab rewrote {name}.py"
        _shot(page, name, "run_top", page.locator(f"{PANEL} .jp-Cell").first)

        # 4. move one widget and wait for its figure to change
        box = page.locator(f"{PANEL} .jp-OutputArea-output .widget-vbox").filter(
            has=page.locator(".widget-output img")).first
        if box.count():
            img = box.locator(".widget-output img").first
            before = img.get_attribute("src")
            handle = box.locator(".noUi-handle")
            if handle.count():
                h = handle.first
                at_max = h.get_attribute("aria-valuenow") == h.get_attribute("aria-valuemax")
                h.focus()  # one step: one redraw, so the screenshot shows a settled figure
                page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
            else:
                sel = box.locator("select").first
                sel.select_option(index=1)
            page.wait_for_function(
                "([el, before]) => { const i = el.querySelector('.widget-output img');"
                " return i && i.src !== before && i.complete && i.naturalWidth > 0; }",
                arg=[box.element_handle(), before], timeout=60_000)
            lab.wait_idle(path, 60)
            _shot(page, name, "run_widget", box)

        # 5. play the animation: its frame must change after one click on Play
        player = page.locator(f"{PANEL} .animation").first
        if name.startswith(("06", "07")):
            assert player.count(), "no animation player after running"
            player.scroll_into_view_if_needed()
            frame = player.locator("img").first
            page.wait_for_function("el => el.src.startsWith('data:image')", arg=frame.element_handle(),
                                   timeout=30_000)
            first = frame.get_attribute("src")
            player.locator("button[title='Play']").click()
            page.wait_for_function("([el, f]) => el.src !== f", arg=[frame.element_handle(), first],
                                   timeout=15_000)
            _shot(page, name, "run_animation", player)

        # 6. one exercise: a wrong function gets FAIL with a hint, the right one PASS
        check, fn = _first_check(py_before.decode())
        _command(page, "notebook:move-cursor-down")  # leave the widget focus
        page.evaluate("() => { const nb = window.jupyterapp.shell.currentWidget.content;"
                      " nb.activeCellIndex = nb.widgets.length - 1; nb.mode = 'command'; }")
        _command(page, "notebook:insert-cell-below")
        # a dropdown widget can keep the keyboard focus (chapter 8): release it, then put the
        # cursor into the new cell's editor by clicking it (that also enters edit mode)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.locator(f"{PANEL} .jp-CodeCell").last.locator(".jp-InputArea-editor").click()
        _command(page, "notebook:enter-edit-mode")
        page.keyboard.insert_text(EXERCISE_CELL.format(fn=fn, check=check))
        _command(page, "notebook:run-cell")
        last = page.locator(f"{PANEL} .jp-CodeCell").last
        page.wait_for_function(
            "el => /PASS check_/.test((el.querySelector('.jp-OutputArea') || {}).innerText || '')",
            arg=last.element_handle(), timeout=60_000)
        text = last.locator(".jp-OutputArea").inner_text()
        m = re.search(rf"FAIL {check}: (.+)", text)
        assert m and len(m.group(1)) > 20, f"no FAIL line with a hint for {check}: {text!r}"
        assert re.search(rf"PASS {check}", text), text
        _shot(page, name, "run_exercise", last)
        assert not page.outside, f"the page asked for outside resources: {sorted(set(page.outside))[:5]}"
        assert not page.errors, f"JavaScript errors in the page: {page.errors[:3]}"
        print(f"{name}: run all {run_s:.1f} s, {view['images']} saved images")
    finally:
        _close(page)
        lab.shutdown(path)
