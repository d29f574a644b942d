"""The autograder (dmlib.course.grade): fake submissions of chapter 00_setup, graded in two batches."""

import contextlib
import csv
import hashlib
import io
from pathlib import Path

import nbformat
import pytest

from dmlib.course import grade
from dmlib.course.tools import student

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "chapters" / "00_setup.ipynb"
SOLUTION = "return torch.cumprod(1 - betas, dim=0)"
CHECK = "check_alpha_bar"  # the exercise the fake submissions get wrong
CHECKS = ["check_alpha_bar", "check_to_model_range", "check_snr"]  # 00_setup, in order


def _row(rows, check=CHECK):
    (r,) = [r for r in rows if r["check"] == check]
    return r


def _ref() -> nbformat.NotebookNode:
    return nbformat.read(REF, as_version=4)


def _exercise_index(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if SOLUTION in c.source)


def _edit_exercise(new_source: str) -> nbformat.NotebookNode:
    nb = _ref()
    nb.cells[_exercise_index(nb)].source = new_source
    return nb


def _save(root: Path, who: str, nb, name: str = "00_setup.ipynb") -> None:
    (root / who).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / who / name)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _demo_hint(label: str) -> str:
    """The hint the reference chapter shows for one of its demonstrated wrong versions."""
    text = "".join(o.get("text", "") for c in _ref().cells if c.cell_type == "code"
                   for o in c.outputs if o.get("output_type") == "stream")
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith(f"[{label}] FAIL {CHECK}: "))
    hint = lines[i].split(f"{CHECK}: ", 1)[1]
    for ln in lines[i + 1:]:  # a long check line wraps; continuation lines are indented
        if not ln.startswith("    "):
            break
        hint += " " + ln.strip()
    return hint


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One grade call over six students; returns (rows by student, out dir, stdout, sub dir)."""
    tmp = tmp_path_factory.mktemp("grade")
    sub, out = tmp / "submissions", tmp / "out"
    _save(sub, "alice", _ref())  # the reference itself
    stu, _ = student.studentize(_ref(), "00_setup")
    _save(sub, "bob", stu)  # the student build, untouched
    _save(sub, "carol", _edit_exercise(  # a typical mistake
        "def alpha_bar_from_betas(betas):\n    return torch.cumprod(betas, dim=0)\n"))
    _save(sub, "dave", _edit_exercise(  # the exercise cell crashes before the def
        "undefined_helper()\n\ndef alpha_bar_from_betas(betas):\n"
        "    return torch.cumprod(1 - betas, dim=0)\n"))
    _save(sub, "erin", _edit_exercise(  # the function body crashes when the check calls it
        "def alpha_bar_from_betas(betas):\n    return torch.cumprod(1 - betaz, dim=0)\n"))
    (sub / "frank").mkdir()
    (sub / "frank" / "00_setup.ipynb").write_text('{"cells": [', encoding="utf-8")
    _save(sub, "gina", _ref(), name="00_setup-Copy1.ipynb")  # not a chapter name
    before = _hashes(sub)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = grade.main([str(sub), "--out", str(out), "--timeout", "300"])
    assert rc == 0
    assert _hashes(sub) == before, "a submitted file was modified"
    rows: dict[str, list[dict[str, str]]] = {}
    for r in _read_csv(out / "grades.csv"):
        rows.setdefault(r["student"], []).append(r)
    return rows, out, buf.getvalue(), sub


def test_expected_checks_come_from_the_reference():
    exp = grade.expected_checks(REF)
    assert [e.name for e in exp] == CHECKS  # the bracketed demo FAILs are not expected checks
    names = [e.name for e in grade.expected_checks(ROOT / "chapters" / "03_forward_process.ipynb")]
    assert names.count("check_q_step") == 1  # its unbracketed demo FAIL does not count


@pytest.mark.slow
def test_reference_passes_and_student_build_is_not_implemented(batch):
    rows, out, _, _ = batch
    assert [(r["check"], r["status"]) for r in rows["alice"]] == [(c, "pass") for c in CHECKS]
    assert [(r["check"], r["status"]) for r in rows["bob"]] == [(c, "not implemented") for c in CHECKS]
    assert (out / "executed" / "alice" / "00_setup.ipynb").is_file()


@pytest.mark.slow
def test_wrong_implementation_fails_with_the_hint(batch):
    r = _row(batch[0]["carol"])
    assert [x["status"] for x in batch[0]["carol"]] == ["fail", "pass", "pass"]
    assert r["status"] == "fail"
    assert r["message"] == _demo_hint("product of betas")


@pytest.mark.slow
def test_crashing_exercise_is_an_error_and_the_notebook_goes_on(batch):
    rows, out, _, _ = batch
    r = _row(rows["dave"])
    assert r["status"] == "error"
    assert r["message"].startswith("NameError: name 'alpha_bar_from_betas' is not defined")
    assert "undefined_helper" in r["message"]  # the first error is named too
    executed = nbformat.read(out / "executed" / "dave" / "00_setup.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                   for o in c.outputs if o.get("output_type") == "stream")
    assert "[running sum] FAIL check_alpha_bar" in text and "alpha_bar_T =" in text
    r = _row(rows["erin"])
    assert r["status"] == "error" and "raised NameError" in r["message"] and "betaz" in r["message"]


@pytest.mark.slow
def test_corrupt_and_misnamed_notebooks(batch):
    rows = batch[0]
    assert [r["status"] for r in rows["frank"]] == ["unreadable"] * len(CHECKS)
    assert rows["frank"][0]["message"].startswith("unreadable notebook")
    by_status = {r["status"]: r for r in rows["gina"]}
    unknown = by_status["unknown chapter"]
    assert unknown["chapter"] == "00_setup-Copy1" and "00_setup, 01_gaussian" in unknown["message"]
    assert by_status["missing"]["message"].startswith("not submitted")  # 00_setup itself


@pytest.mark.slow
def test_reports(batch):
    rows, out, stdout, _ = batch
    summary = {(r["student"], r["chapter"]): r for r in _read_csv(out / "summary.csv")}
    assert summary["alice", "00_setup"] == {"student": "alice", "chapter": "00_setup",
                                            "passed": "3", "total": "3", "score": "100.0"}
    assert summary["carol", "00_setup"]["score"] == "66.7"
    assert summary["gina", "00_setup-Copy1"]["total"] == "0"
    md = (out / "summary.md").read_text()
    assert "## alice" in md and "## Totals" in md and "| alice | 3 | 3 | 100.0 |" in md
    assert "| 00_setup | check_alpha_bar | fail |" in md
    assert "graded 7 student(s)" in stdout and "alice" in stdout
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_endless_loop_times_out_and_the_batch_goes_on(tmp_path, capsys):
    sub = tmp_path / "sub"
    nb = _ref()
    nb.cells.insert(1, nbformat.v4.new_code_cell("while True:\n    pass"))
    _save(sub, "eve", nb)
    _save(sub, "zed", _ref())
    assert grade.main([str(sub), "--out", str(tmp_path / "out"), "--timeout", "40"]) == 0
    rows = {r["student"]: r for r in _read_csv(tmp_path / "out" / "grades.csv")}
    assert rows["eve"]["status"] == "timeout"
    assert rows["eve"]["message"].startswith("timeout after 40 s (cell 1")
    assert rows["zed"]["status"] == "pass"


@pytest.mark.parametrize("layout, msg", [
    ("absent", "does not exist"),
    ("empty", "no notebooks found"),
    ("loose", "lie directly in"),
])
def test_bad_submission_folders_are_explained(tmp_path, capsys, layout, msg):
    sub = tmp_path / "sub"
    if layout != "absent":
        sub.mkdir()
        (sub / "alice").mkdir()
    if layout == "loose":
        nbformat.write(_ref(), sub / "00_setup.ipynb")
    assert grade.main([str(sub), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert msg in err and "<student>/<chapter>.ipynb" in err
