"""Course tooling: jupytext pair checks, the student build, nbval's checked outputs."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dmlib.course.tools import pairs, student

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"

PY = """# %% [markdown]
# # A chapter

# %%
x = 1 + 1
print(x)
"""


def _make_pair(tmp_path: Path) -> Path:
    py = tmp_path / "01_demo.py"
    py.write_text(PY)
    pairs.sync_one(py)
    return py


def test_sync_creates_matching_ipynb(tmp_path):
    py = _make_pair(tmp_path)
    assert pairs.compare_pair(py, py.with_suffix(".ipynb")) is None


def test_edited_py_without_sync_is_named(tmp_path):
    py = _make_pair(tmp_path)
    py.write_text(PY.replace("1 + 1", "1 + 2"))
    msg = pairs.compare_pair(py, py.with_suffix(".ipynb"))
    assert msg and "01_demo.py" in msg and "cell 1" in msg and "make sync" in msg
    assert any("01_demo.py" in p for p in pairs.check(tmp_path))


def test_edited_ipynb_is_named(tmp_path):
    py = _make_pair(tmp_path)
    nb_path = py.with_suffix(".ipynb")
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("y = 3"))
    nbformat.write(nb, nb_path)
    msg = pairs.compare_pair(py, nb_path)
    assert "has 2 cells but 01_demo.ipynb has 3" in msg


def test_unpaired_files_are_reported(tmp_path):
    (tmp_path / "02_alone.py").write_text(PY)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "03_orphan.ipynb")
    _, problems = pairs.chapter_pairs(tmp_path)
    assert any("02_alone.py: no paired .ipynb" in p for p in problems)
    assert any("03_orphan.ipynb: no paired .py" in p for p in problems)


def test_unexecuted_notebook_is_reported(tmp_path):
    py = _make_pair(tmp_path)
    assert any("has not been executed" in p for p in pairs.check(tmp_path))
    nb_path = py.with_suffix(".ipynb")
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].execution_count = 1
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="E", evalue="", traceback=[])]
    nbformat.write(nb, nb_path)
    assert any("stored an error output" in p for p in pairs.check(tmp_path))


def test_sync_keeps_outputs(tmp_path):
    py = _make_pair(tmp_path)
    nb_path = py.with_suffix(".ipynb")
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb.cells[1].execution_count = 1
    nbformat.write(nb, nb_path)
    py.write_text(PY.replace("# # A chapter", "# # A chapter, retitled"))
    pairs.sync_one(py)
    nb = nbformat.read(nb_path, as_version=4)
    assert nb.cells[0].source.startswith("# A chapter, retitled")
    assert nb.cells[1].outputs[0]["text"] == "2\n"


def test_repository_chapters_are_in_sync_and_executed():
    problems = pairs.check(CHAPTERS)
    assert not problems, "\n".join(problems)


# ---- student build ---------------------------------------------------------------------
SOL = """def f(x):
    y = x + 1
    ### BEGIN SOLUTION
    secret_answer = y * 2
    return secret_answer
    ### END SOLUTION
"""


def test_strip_solutions_keeps_indentation():
    out, n = student.strip_solutions(SOL)
    assert n == 1
    assert "secret_answer" not in out
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()" in out
    ns = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError):
        ns["f"](1)


@pytest.mark.parametrize("src, msg", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "nested"),
])
def test_bad_markers_are_named(src, msg):
    with pytest.raises(student.SolutionMarkerError, match=msg):
        student.strip_solutions(src, where="ch, cell 3")


def test_studentize_clears_outputs_and_sets_nbgrader_metadata():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SOL), nbformat.v4.new_code_cell("checks.check_f(f)")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi")]
    nb.cells[0].execution_count = 3
    out, n = student.studentize(nb, "ch")
    assert n == 1
    assert out.cells[0].outputs == [] and out.cells[0].execution_count is None
    assert out.cells[0].metadata["nbgrader"]["solution"] is True
    assert out.cells[1].metadata["nbgrader"]["locked"] is True
    assert out.cells[1].metadata["editable"] is False
    assert nb.cells[0].outputs  # the original is untouched


def _solution_lines(nb):
    lines = []
    for c in nb.cells:
        inside = False
        for ln in c.source.splitlines():
            if ln.strip() == student.BEGIN:
                inside = True
            elif ln.strip() == student.END:
                inside = False
            elif inside and ln.strip():
                lines.append(ln.strip())
    return lines


def test_student_build_leaks_no_solution(tmp_path):
    counts = student.build(CHAPTERS, tmp_path)
    assert counts and all(n >= 1 for n in counts.values())
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        sol = _solution_lines(nbformat.read(path, as_version=4))
        stu = nbformat.read(tmp_path / path.name, as_version=4)
        text = "\n".join(c.source for c in stu.cells)
        for line in sol:
            assert line not in text, f"{path.name}: solution line leaked: {line!r}"
        assert all(c.get("outputs", []) == [] for c in stu.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", sorted(p.stem for p in CHAPTERS.glob("*.ipynb")))
def test_pasting_solutions_back_restores_the_chapter(name):
    """Stubbing is reversible: with the solutions pasted back, every cell is the original."""
    ref = nbformat.read(CHAPTERS / f"{name}.ipynb", as_version=4)
    stu, _ = student.studentize(ref, name)
    for a, b in zip(ref.cells, stu.cells):
        assert student.paste_solutions(b.source, a.source) == a.source


def test_student_chapter_with_solutions_pasted_back_passes_every_check(tmp_path):
    ref = nbformat.read(CHAPTERS / "00_setup.ipynb", as_version=4)
    nb, n_ex = student.studentize(ref, "00_setup")
    for a, b in zip(ref.cells, nb.cells):
        b.source = student.paste_solutions(b.source, a.source)
    nbformat.write(nb, tmp_path / "00_setup.ipynb")
    run, _ = pairs.run_notebook(tmp_path / "00_setup.ipynb", quick=True, timeout=600)
    lines = [ln for ln in _stream_text(run).splitlines() if "check_" in ln and not ln.startswith("[")]
    assert len(lines) == n_ex and all(ln.startswith("PASS ") for ln in lines), lines


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in CHAPTERS.glob("*.ipynb")))
def test_student_version_runs_to_the_end(tmp_path, name):
    """Every stubbed exercise reports NOT IMPLEMENTED YET at its check; nothing else breaks."""
    nb, n_ex = student.studentize(nbformat.read(CHAPTERS / f"{name}.ipynb", as_version=4), name)
    assert n_ex >= 1, f"{name} has no exercise"
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    run, _ = pairs.run_notebook(path, quick=True, timeout=600)
    text = _stream_text(run)
    assert text.count("NOT IMPLEMENTED YET") == n_ex, f"{name}: {text[-2000:]}"
    # the only FAILs are the chapter's own demonstrations of wrong versions
    solved = _stream_text(nbformat.read(CHAPTERS / f"{name}.ipynb", as_version=4))
    fails = lambda s: sorted(ln for ln in s.splitlines() if "FAIL" in ln)  # noqa: E731
    assert fails(text) == fails(solved), f"{name}: a check failed in the student build"


def _stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.get("output_type") == "stream")


# ---- nbval compares the marked cells ------------------------------------------------------
def _tiny_notebook(path: Path, printed: int, stored: int) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"# NBVAL_CHECK_OUTPUT\nprint({printed})")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{stored}\n")]
    cell.execution_count = 1
    free = nbformat.v4.new_code_cell("import time\nprint(time.time())")
    free.outputs = [nbformat.v4.new_output("stream", name="stdout", text="0\n")]
    free.execution_count = 2
    nb.cells = [cell, free]
    nbformat.write(nb, path)


@pytest.mark.parametrize("printed, stored, ok", [(42, 42, True), (42, 41, False)])
def test_nbval_fails_when_a_checked_number_changes(tmp_path, printed, stored, ok):
    nb = tmp_path / "demo.ipynb"
    _tiny_notebook(nb, printed, stored)
    r = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                        "-p", "no:cacheprovider", "-q", str(nb)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert (r.returncode == 0) == ok, r.stdout[-2000:]


@pytest.mark.parametrize("printed, stored, ok", [
    ("'max error 3.6e-15 (< 1e-10): True'", "max error 1.2e-16 (< 1e-10): True", True),
    ("'max error 3.6e-03 (< 1e-10): False'", "max error 1.2e-16 (< 1e-10): True", False),
    ("'gap 0.0e+00'", "gap 2.2e-16", True),
    ("'order 1.02'", "order 1.03", False)])
def test_nbval_sanitizer_masks_round_off_only(tmp_path, printed, stored, ok):
    """chapters/nbval_sanitize.cfg: round-off digits may differ, anything else may not."""
    nb = tmp_path / "demo.ipynb"
    _tiny_notebook(nb, printed, stored)
    cfg = Path(__file__).resolve().parents[1] / "chapters" / "nbval_sanitize.cfg"
    r = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                        "--nbval-sanitize-with", str(cfg), "-p", "no:cacheprovider", "-q", str(nb)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert (r.returncode == 0) == ok, r.stdout[-2000:]
