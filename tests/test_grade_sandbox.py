"""The grader's sandbox, tamper detection and reference-use report (dmlib.course.grade).

The hostile notebooks run in a tiny synthetic chapter (no torch in the kernel, so each takes
a few seconds) with small limits. Each hostile cell carries its own safety bound (a number of
forks, files or megabytes) so that a broken sandbox makes the test fail, not the machine.
"""

import contextlib
import csv
import hashlib
import io
import os
import time
from pathlib import Path

import nbformat
import pytest

from dmlib.course import grade
from dmlib.course.tools import student

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "chapters" / "00_setup.ipynb"
N = nbformat.v4

# A tiny chapter: two checks around the place where the hostile code goes (cell 2).
_CHECKS = ("def check_first(v):\n    print('PASS check_first: fine' if v == 1 else 'FAIL check_first: no')\n"
           "def check_after(v):\n    print('PASS check_after: fine' if v == 2 else 'FAIL check_after: no')")


def _tiny_reference() -> nbformat.NotebookNode:
    nb = N.new_notebook()
    nb.cells = [N.new_code_cell(_CHECKS),
                N.new_code_cell("check_first(1)", outputs=[
                    N.new_output("stream", name="stdout", text="PASS check_first: fine\n")]),
                N.new_code_cell("x = 2"),
                N.new_code_cell("check_after(x)", outputs=[
                    N.new_output("stream", name="stdout", text="PASS check_after: fine\n")])]
    return nb


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    chapters = tmp_path_factory.mktemp("chapters")
    nbformat.write(_tiny_reference(), chapters / "99_tiny.ipynb")
    return chapters


def _hostile(code: str) -> nbformat.NotebookNode:
    nb = _tiny_reference()
    nb.cells[2].source = code + "\nx = 2"
    return nb


def _grade(tmp: Path, chapters: Path, notebooks: dict, **limits) -> tuple[dict, str, float]:
    """Grade {student: notebook}; return ({student: {check: row}}, log, seconds)."""
    sub = tmp / "sub"
    for who, nb in notebooks.items():
        (sub / who).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, sub / who / "99_tiny.ipynb")
    log = io.StringIO()
    t0 = time.monotonic()
    grade.grade(sub, tmp / "out", chapters=chapters, log=log, limits=grade.Limits(**limits))
    took = time.monotonic() - t0
    with open(tmp / "out" / "grades.csv", newline="", encoding="utf-8") as f:
        rows: dict = {}
        for r in csv.DictReader(f):
            rows.setdefault(r["student"], {})[r["check"]] = r
    return rows, log.getvalue(), took


def _executed_text(tmp: Path, who: str) -> str:
    nb = nbformat.read(tmp / "out" / "executed" / who / "99_tiny.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


def _procs_of(uid: int) -> list[int]:
    """Live processes running as ``uid``."""
    out = []
    for pid in grade._proc_pids():
        st = grade._status(pid)
        if st and not st.get("State", "").strip().startswith(("Z", "X")):
            if int(st.get("Uid", "-1").split()[0]) == uid:
                out.append(pid)
    return out


def _alive(pid: int) -> bool:
    st = grade._status(pid)
    return bool(st) and not st.get("State", "").strip().startswith(("Z", "X"))


def _uid_mode() -> bool:
    return grade.sandbox_mode(grade.Limits())[0] == "uid"


needs_uid = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                               reason="the throw-away user needs root")
GOOD = _tiny_reference()


# ---- hostile notebooks -------------------------------------------------------------------------
@needs_uid
def test_fork_loop_hits_the_process_limit_and_leftovers_are_killed(tmp_path, tiny):
    """RLIMIT_NPROC (throw-away user) stops the forks; the sleepers it leaves are killed."""
    if not _uid_mode():
        pytest.skip("the kernel cannot run as a throw-away user here")
    code = ("import os, time, signal\nkids = []\ntry:\n"
            "    for _ in range(400):  # safety bound\n"
            "        pid = os.fork()\n"
            "        if pid == 0:\n            time.sleep(300)\n            os._exit(0)\n"
            "        kids.append(pid)\n"
            "except OSError as e:\n    print('forks', len(kids), type(e).__name__)\n"
            "for pid in kids[3:]:  # keep three sleepers, let the notebook go on\n"
            "    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)\n"
            "print('sleepers', *kids[:3])\nprint('uid', os.getuid())")
    rows, log, took = _grade(tmp_path, tiny, {"eve": _hostile(code), "zed": GOOD},
                             timeout=30, nproc=40)
    text = _executed_text(tmp_path, "eve")
    forks = int(text.split("forks ", 1)[1].split()[0])
    assert 3 < forks < 40 and "BlockingIOError" in text  # the limit, not the safety bound
    assert rows["eve"]["check_after"]["status"] == "pass"  # the notebook went on
    assert rows["zed"]["check_after"]["status"] == "pass"  # and so did the batch
    sleepers = [int(p) for p in text.split("sleepers ", 1)[1].splitlines()[0].split()]
    assert len(sleepers) == 3 and not any(_alive(p) for p in sleepers)
    uid = int(text.split("uid ", 1)[1].split()[0])
    assert uid in grade.SANDBOX_UIDS and _procs_of(uid) == []


def test_fork_bomb_as_the_same_user_is_stopped_by_the_watchdog(tmp_path, tiny):
    """Without a throw-away user (root is exempt from RLIMIT_NPROC) the watchdog kills it."""
    pids = tmp_path / "pids"
    pids.mkdir()
    code = ("import os, time\n"
            "for _ in range(7):  # safety bound: at most 2**7 processes\n"
            "    os.fork()\n"
            f"    open(os.path.join({str(pids)!r}, str(os.getpid())), 'w').close()\n"
            "    time.sleep(0.3)\n"
            "time.sleep(120)")
    rows, log, took = _grade(tmp_path, tiny, {"eve": _hostile(code), "zed": GOOD},
                             timeout=30, nproc=40, same_user=True)
    r = rows["eve"]["check_after"]
    watchdog = "processes and threads (limit 40, --nproc)" in r["message"]
    # as a normal user RLIMIT_NPROC (your tasks + 40) may stop the forks first: fork or
    # thread creation then fails inside the notebook, which is as good a stop
    rlimit = os.geteuid() != 0 and any(s in r["message"] for s in
                                       ("BlockingIOError", "can't start new thread"))
    assert r["status"] == "error" and (watchdog or rlimit), r["message"]
    assert rows["eve"]["check_first"]["status"] == "pass"
    assert rows["zed"]["check_after"]["status"] == "pass"
    seen = [int(p.name) for p in pids.iterdir()]
    assert len(seen) > 1 and not any(_alive(p) for p in seen)
    assert took < 30  # stopped by the watchdog, long before the timeout


def test_disk_fill_is_stopped(tmp_path, tiny):
    """One big file hits RLIMIT_FSIZE; many files hit the watchdog's --disk-mb."""
    before = {p.name for p in Path(grade.tempfile.gettempdir()).glob("dmlib-grade-*")}
    # the full file is emptied at once, so that only the second part trips the watchdog
    code = ("import os, time\nmb = b'x' * 2**20\nn = 0\nf = open('big', 'wb', buffering=0)\ntry:\n"
            "    for _ in range(64):  # safety bound: 64 MB\n"
            "        f.write(mb); n += 1\n"
            "except OSError as e:\n    f.truncate(0); f.close()\n"
            "    print('one file stopped at', n, 'MB:', e.strerror, flush=True)\n"
            "time.sleep(1)\n"
            "for i in range(200):  # safety bound: 200 MB\n"
            "    with open(f'f{i}', 'wb') as f:\n        f.write(mb[:-1])\n"
            "    time.sleep(0.01)\n")
    rows, log, took = _grade(tmp_path, tiny, {"eve": _hostile(code)}, timeout=30, disk_mb=8)
    assert "one file stopped at 8 MB: File too large" in _executed_text(tmp_path, "eve")
    r = rows["eve"]["check_after"]
    assert r["status"] == "error" and "(limit 8 MB, --disk-mb)" in r["message"]
    after = {p.name for p in Path(grade.tempfile.gettempdir()).glob("dmlib-grade-*")}
    assert after <= before  # the scratch folder is gone


def test_memory_hog_is_stopped(tmp_path, tiny):
    """One huge block fails (RLIMIT_AS); five processes that fit it one by one but not
    together are killed by the watchdog."""
    code = ("import os, time\ntry:\n    big = bytearray(4 * 2**30)\n"
            "except MemoryError:\n    print('one 4 GB block: MemoryError', flush=True)\n"
            "for _ in range(5):  # safety bound: 5 x 300 MB\n"
            "    if os.fork() == 0:\n"
            "        block = b'x' * (300 * 2**20)\n        time.sleep(120)\n        os._exit(0)\n"
            "time.sleep(120)")
    rows, log, took = _grade(tmp_path, tiny, {"eve": _hostile(code), "zed": GOOD},
                             timeout=30, memory_mb=1300)
    assert "one 4 GB block: MemoryError" in _executed_text(tmp_path, "eve")
    r = rows["eve"]["check_after"]
    assert r["status"] == "error" and "(limit 1300 MB, --memory-mb)" in r["message"]
    assert rows["zed"]["check_after"]["status"] == "pass"
    assert took < 30


@needs_uid
def test_files_outside_the_scratch_folder_survive(tmp_path, tiny, monkeypatch):
    """The teacher's files can be neither deleted nor written; the shared /tmp is cleaned;
    the teacher's environment does not reach the kernel."""
    if not _uid_mode():
        pytest.skip("the kernel cannot run as a throw-away user here")
    teacher = tmp_path / "teacher" / "grades_2025.csv"
    teacher.parent.mkdir()
    teacher.write_text("alice,100\n")
    os.chmod(teacher.parent, 0o777 & ~0o022)  # rwxr-xr-x: others may read, not write
    repo_file = ROOT / "dmlib" / "__init__.py"
    repo_before = hashlib.sha256(repo_file.read_bytes()).hexdigest()
    shared = Path("/tmp") / f"dmlib-test-left-{os.getpid()}"
    monkeypatch.setenv("DMLIB_TEST_SECRET", "hunter2")
    code = (
        "import os\n"
        f"for what, fn in [('delete', lambda: os.remove({str(teacher)!r})),\n"
        f"                 ('overwrite', lambda: open({str(teacher)!r}, 'w').write('alice,0')),\n"
        f"                 ('new file', lambda: open({str(teacher.parent / 'new.txt')!r}, 'w')),\n"
        f"                 ('repo', lambda: open({str(repo_file)!r}, 'a').write('#')),\n"
        "                 ('chmod', lambda: os.chmod(" + repr(str(teacher)) + ", 0o666))]:\n"
        "    try:\n        fn()\n        print('DID', what)\n"
        "    except OSError as e:\n        print('blocked', what, type(e).__name__)\n"
        f"open({str(shared)!r}, 'w').write('left behind')\n"
        "print('env', sorted(os.environ))\nprint('secret' , os.environ.get('DMLIB_TEST_SECRET'))\n"
        "print('cwd', os.getcwd() == os.environ['HOME'])")
    rows, log, took = _grade(tmp_path, tiny, {"eve": _hostile(code)}, timeout=30)
    text = _executed_text(tmp_path, "eve")
    assert "DID" not in text and text.count("blocked") == 5, text
    assert teacher.read_text() == "alice,100\n" and not (teacher.parent / "new.txt").exists()
    assert hashlib.sha256(repo_file.read_bytes()).hexdigest() == repo_before
    assert not shared.exists()  # what it left in /tmp went with it
    assert "secret None" in text and "hunter2" not in text and "cwd True" in text
    assert rows["eve"]["check_after"]["status"] == "pass"


def test_endless_output_is_capped(tmp_path, tiny):
    """Past --max-output-mb only check lines are kept; endless output ends at the timeout."""
    chatty = ("for i in range(3000):  # 3 MB\n    print('x' * 1000)\n"
              "print('PASS check_first: a line printed past the cap is kept')")
    endless = "while True:\n    print('y' * 10000)"
    rows, log, took = _grade(tmp_path, tiny, {"amy": _hostile(chatty), "eve": _hostile(endless)},
                             timeout=8, output_mb=1)
    assert rows["amy"]["check_after"]["status"] == "pass"  # its line came after the cap
    assert "output past 1 MB dropped (cells 2)" in log
    size = (tmp_path / "out" / "executed" / "amy" / "99_tiny.ipynb").stat().st_size
    assert 1e6 < size < 1.3e6
    assert "check lines kept" in _executed_text(tmp_path, "amy")
    assert rows["eve"]["check_first"]["status"] == "pass"
    assert rows["eve"]["check_after"]["status"] == "timeout"
    assert (tmp_path / "out" / "executed" / "eve" / "99_tiny.ipynb").stat().st_size < 1.3e6


def test_limits_are_validated():
    with pytest.raises(ValueError, match="--memory-mb"):
        grade.Limits(memory_mb=0)
    with pytest.raises(ValueError, match="--nproc"):
        grade.Limits(nproc=-3)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        grade.main(["somewhere", "--disk-mb", "0"])
    assert "--disk-mb" in err.getvalue()


# ---- tamper detection --------------------------------------------------------------------------
def _student_build() -> nbformat.NotebookNode:
    nb, _ = student.studentize(nbformat.read(REF, as_version=4), "00_setup")
    return nb


def _locked_index(nb, check: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                and c.metadata.get("nbgrader", {}).get("locked") and f"{check}(" in c.source)


def test_checksum_follows_nbgrader_recipe():
    nb = _student_build()
    cell = nb.cells[_locked_index(nb, "check_snr")]
    meta = cell.metadata["nbgrader"]
    # nbgrader: md5 of source, cell type, str(grade), str(solution), str(locked), grade_id
    want = hashlib.md5((cell.source + "code" + "False" + "False" + "True"
                        + meta["grade_id"]).encode("utf-8")).hexdigest()
    assert meta["checksum"] == want == student.compute_checksum(cell)
    solution = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    assert "checksum" not in solution.metadata["nbgrader"]  # only locked cells carry one
    with pytest.raises(ValueError, match="no nbgrader metadata"):
        student.compute_checksum(N.new_code_cell("x = 1"))


@pytest.fixture(scope="module")
def setup_chapter():
    return grade.load_chapter(REF)


def test_untouched_notebooks_are_not_tampered(setup_chapter):
    assert grade.tampering(_student_build(), setup_chapter.locked) == {}
    assert grade.tampering(nbformat.read(REF, as_version=4), setup_chapter.locked) == {}
    nb = _student_build()  # metadata stripped (pasted into a fresh notebook), code intact
    for c in nb.cells:
        c.metadata.pop("nbgrader", None)
    assert grade.tampering(nb, setup_chapter.locked) == {}


@pytest.mark.parametrize("edit, what", [
    ("source", "its code was edited"),
    ("source+checksum", "its code was edited"),  # the student recomputed the checksum
    ("checksum", "its stored checksum was changed"),
    ("unlock", "its nbgrader metadata was edited"),
    ("markdown", "it was turned into a markdown cell"),
    ("delete", "is not in the notebook"),
])
def test_edited_locked_cells_are_tampered(setup_chapter, edit, what):
    nb = _student_build()
    i = _locked_index(nb, "check_alpha_bar")
    cell = nb.cells[i]
    gid = cell.metadata["nbgrader"]["grade_id"]
    if edit.startswith("source"):
        cell.source = "print('PASS check_alpha_bar: all 3 cases agree with the reference')"
        if edit.endswith("checksum"):
            cell.metadata["nbgrader"]["checksum"] = student.compute_checksum(cell)
    elif edit == "checksum":
        cell.metadata["nbgrader"]["checksum"] = "0" * 32
    elif edit == "unlock":
        cell.metadata["nbgrader"]["locked"] = False
    elif edit == "markdown":
        nb.cells[i] = N.new_markdown_cell(cell.source, metadata=cell.metadata)
    else:
        del nb.cells[i]
    found = grade.tampering(nb, setup_chapter.locked)
    assert list(found) == [gid] and what in found[gid]


# ---- reference use -----------------------------------------------------------------------------
BINDINGS = {"checks": "dmlib.checks", "q_sample": "dmlib.forward.q_sample", "dmlib": "dmlib",
            "Schedule": "dmlib.schedules.Schedule"}


@pytest.mark.parametrize("source, names", [
    ("def f(s, x0, t, e):\n    return q_sample(s, x0, t, e)", {"dmlib.forward.q_sample"}),
    ("def f(b):\n    return dmlib.forward.q_sample(b)", {"dmlib.forward.q_sample"}),
    ("import dmlib.forward as F\ndef f(b):\n    return F.q_sample(b)",
     {"dmlib.forward", "dmlib.forward.q_sample"}),
    ("def f(b):\n    from dmlib.checks.basics import _ref_alpha_bar as r\n    return r(b)",
     {"dmlib.checks.basics._ref_alpha_bar"}),
    ("def f(b):\n    return checks.basics._ref_alpha_bar(b)", {"dmlib.checks.basics._ref_alpha_bar"}),
    ("def f(b):\n    return getattr(checks.basics, '_ref_alpha_bar')(b)",
     {"dmlib.checks.basics", "dmlib.checks.basics._ref_alpha_bar"}),
    ("import importlib\ndef f(b):\n    return importlib.import_module('dmlib.checks')",
     {"dmlib.checks"}),
    ("def q_sample(s, x0, t, e):\n    return x0\ndef f(b):\n    return q_sample(b, b, 1, b)", set()),
    ("def f(s: Schedule, b):\n    %time x = 1\n    return b.cumprod(0)", {"dmlib.schedules.Schedule"}),
    ("def f(b):\n    return torch.cumprod(1 - b, 0)", set()),
    ("this is not python", set()),
])
def test_dmlib_names(source, names):
    assert grade.dmlib_names(source, BINDINGS) == names


def test_reference_use_is_per_exercise_and_ignores_the_reference_solution(setup_chapter):
    nb = _student_build()
    (ex1, ex2, _) = setup_chapter.exercises
    cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells}
    cells[ex1.grade_id].source = ("def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:\n"
                                  "    return checks.basics._ref_alpha_bar(betas)\n")
    cells[ex2.grade_id].source = ex2.source  # the reference's own solution: nothing to report
    assert grade.reference_use(nb, setup_chapter.exercises) == {
        "check_alpha_bar": ["dmlib.checks.basics._ref_alpha_bar"]}
    assert grade.reference_use(nbformat.read(REF, as_version=4), setup_chapter.exercises) == {}


# ---- both, end to end (one real chapter run) ------------------------------------------------------
@pytest.mark.slow
def test_tampered_and_reference_use_rows_in_the_reports(tmp_path):
    nb = _student_build()
    ex1 = grade.load_chapter(REF).exercises[0]
    for c in nb.cells:
        if c.metadata["nbgrader"]["grade_id"] == ex1.grade_id:
            c.source = ("def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:\n"
                        "    return checks.basics._ref_alpha_bar(betas)\n")
    nb.cells[_locked_index(nb, "check_snr")].source = (
        "print('PASS check_snr: all 2 cases agree with the reference')")
    sub = tmp_path / "sub"
    (sub / "mallory").mkdir(parents=True)
    nbformat.write(nb, sub / "mallory" / "00_setup.ipynb")
    out = tmp_path / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        assert grade.main([str(sub), "--out", str(out), "--timeout", "300"]) == 0
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {r["check"]: r for r in csv.DictReader(f)}
    assert rows["check_alpha_bar"]["status"] == "pass"  # graded as usual, but flagged
    assert rows["check_alpha_bar"]["reference_use"] == "dmlib.checks.basics._ref_alpha_bar"
    assert rows["check_to_model_range"]["status"] == "not implemented"
    assert rows["check_to_model_range"]["reference_use"] == ""
    snr = rows["check_snr"]
    assert snr["status"] == "tampered" and "00_setup-cell-" in snr["message"]
    assert "its code was edited" in snr["message"] and "reported pass" in snr["message"]
    summary = {r["chapter"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert summary["00_setup"]["passed"] == "1" and summary["00_setup"]["total"] == "3"
    md = (out / "summary.md").read_text()
    assert "## To look at" in md and "| mallory | 00_setup | check_snr | the locked" in md
    assert "row(s) to look at" in buf.getvalue()


def test_cpu_limit_kills_the_kernel_and_says_so(tmp_path, tiny):
    rows, log, took = _grade(tmp_path, tiny, {"eve": _hostile("while True:\n    pass")},
                             timeout=30, cpu_seconds=2)
    r = rows["eve"]["check_after"]
    assert r["status"] == "error" and "CPU time limit, --cpu-seconds" in r["message"], r
    assert rows["eve"]["check_first"]["status"] == "pass"
    assert took < 25


@needs_uid
def test_a_process_that_hides_is_killed_with_its_notebook(tmp_path, tiny):
    """A background process in a session of its own, not dumpable (its /proc entry then
    belongs to root), still dies with the notebook: it runs as the throw-away user."""
    if not _uid_mode():
        pytest.skip("the kernel cannot run as a throw-away user here")
    code = ("import os, time, ctypes\nr, w = os.pipe()\n"
            "if os.fork() == 0:\n    os.setsid()\n"
            "    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0\n"
            "    os.write(w, str(os.getpid()).encode())\n    time.sleep(300)\n    os._exit(0)\n"
            "print('hidden', os.read(r, 20).decode())")
    rows, log, took = _grade(tmp_path, tiny, {"eve": _hostile(code)}, timeout=30)
    pid = int(_executed_text(tmp_path, "eve").split("hidden ", 1)[1].split()[0])
    assert rows["eve"]["check_after"]["status"] == "pass"
    assert not _alive(pid)
