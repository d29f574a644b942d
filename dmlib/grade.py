"""Grade students' chapter notebooks by running them and reading their checks (``make grade``).

Usage::

    python -m dmlib.grade SUBMISSIONS_DIR [--out DIR] [--timeout SECONDS] [--quick | --full]

**Layout.** One folder per student, holding that student's notebooks under the chapter's
file name (the name of the reference chapter in ``chapters/``)::

    SUBMISSIONS_DIR/
        alice/00_setup.ipynb
        alice/03_forward_process.ipynb
        bob/00_setup.ipynb

The folder name is the student's name. Files other than ``*.ipynb`` and hidden folders
(``.ipynb_checkpoints``) are ignored. Notebooks lying directly in ``SUBMISSIONS_DIR`` are an
error (there is no student to credit them to). A chapter submitted by some student but not
by another is reported for the latter as ``missing`` ("not submitted").

**Running.** Each notebook is executed in a fresh kernel (``dmlib-course``) with the course's
``chapters/`` folder as working directory, ``DMLIB_QUICK=1`` (``--full`` turns it off) and a
wall-clock limit for the whole notebook (``--timeout``, default 600 s). A crashing cell does
not stop the notebook: later cells still run. The submitted file is only read; the executed
copy is written to ``OUT/executed/<student>/<chapter>.ipynb``. Nothing a notebook does stops
the batch. The student's code runs with your permissions: grade in a sandbox (a container,
a throw-away account) when you do not trust the submissions.

**Checks.** The checks a chapter must report are those whose ``PASS check_xxx`` lines appear
in the stored outputs of the instructor's reference chapter, in order. A student's result
for a check is read from the output of the same (locked) check cell in the submission; lines
starting with ``[`` are the chapter's demonstrations of wrong versions and are ignored.

**Statuses** (``STATUSES``), one row per (student, chapter, check):

* ``pass``            the check printed ``PASS``;
* ``fail``            the check printed ``FAIL`` with a hint (the message);
* ``not implemented`` the check printed ``NOT IMPLEMENTED YET`` (the stub is still there);
* ``error``           the student's code raised: inside the check ("your function raised
  X"), or the check cell itself raised (exception name and message), or the kernel died;
* ``missing``         the check never printed (its cell was deleted or edited, or printed
  nothing), or the chapter was not submitted;
* ``timeout``         the notebook hit the time limit before the check ran;
* ``unreadable``      the submitted file is not a readable notebook (not JSON, ...);
* ``unknown chapter`` the file name is not a chapter of the course (one row, check ``-``).

**Reports** in ``OUT`` (default ``build/grades``), each written atomically: ``grades.csv``
(student, chapter, check, status, message), ``summary.csv`` (student, chapter, passed,
total, score in %) and ``summary.md`` (a table per student plus totals).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .tools.pairs import KERNEL_NAME

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
DEFAULT_OUT = Path("build") / "grades"
DEFAULT_TIMEOUT = 600

PASS, FAIL, NOT_IMPLEMENTED, ERROR = "pass", "fail", "not implemented", "error"
MISSING, TIMEOUT, UNREADABLE, UNKNOWN = "missing", "timeout", "unreadable", "unknown chapter"
STATUSES = (PASS, FAIL, NOT_IMPLEMENTED, ERROR, MISSING, TIMEOUT, UNREADABLE, UNKNOWN)

_LINE = re.compile(r"^(PASS|FAIL|NOT IMPLEMENTED YET) (check_\w+): ?(.*)$")
_LABEL = {"PASS": PASS, "FAIL": FAIL, "NOT IMPLEMENTED YET": NOT_IMPLEMENTED}
_RAISED = "your function raised "


class SubmissionError(ValueError):
    """The submissions folder is missing, empty or not laid out as ``<student>/<chapter>.ipynb``."""


@dataclass(frozen=True)
class Expected:
    """A check a chapter must report: its name, a unique label, and the cell that calls it."""

    name: str
    label: str
    cell_source: str


@dataclass
class Row:
    """One line of ``grades.csv``."""

    student: str
    chapter: str
    check: str
    status: str
    message: str = ""


@dataclass
class Execution:
    """An executed notebook, and how the run ended."""

    nb: nbformat.NotebookNode
    seconds: float
    stopped_at: int | None = None  # index of the cell running when the run stopped
    stop_status: str | None = None  # TIMEOUT or ERROR (kernel died / could not start)
    stop_message: str = ""


# ---- what to expect ------------------------------------------------------------------------
def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def check_lines(cell: nbformat.NotebookNode) -> list[tuple[str, str, str]]:
    """The check lines a cell printed, as (label, check name, message); ``[`` demo lines skipped."""
    out, last = [], None
    for line in _stdout(cell).splitlines():
        if last is not None and line.startswith("    ") and line.strip():
            if last >= 0:  # a wrapped check line continues (dmlib.checks._core.report_line)
                label, name, msg = out[last]
                out[last] = (label, name, f"{msg} {line.strip()}".strip())
            continue
        m = _LINE.match(line.strip())
        last = None
        if m and not line.lstrip().startswith("["):
            out.append((m.group(1), m.group(2), m.group(3).strip()))
            last = len(out) - 1
        elif m:
            last = -1  # a demo line's continuation is skipped with it
    return out


def expected_checks(reference: Path) -> list[Expected]:
    """The checks of a reference chapter: its ``PASS check_xxx`` output lines, in order."""
    nb = nbformat.read(reference, as_version=4)
    found: list[Expected] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for label, name, _ in check_lines(cell):
            if label == "PASS":
                n = sum(e.name == name for e in found)
                found.append(Expected(name, name if n == 0 else f"{name}#{n + 1}",
                                      cell.source.strip()))
    return found


def reference_chapters(folder: Path = CHAPTERS) -> dict[str, list[Expected]]:
    """Every chapter in ``folder`` (by file stem) with the checks it must report."""
    return {p.stem: expected_checks(p) for p in sorted(Path(folder).glob("*.ipynb"))}


# ---- finding the submissions -----------------------------------------------------------------
def discover(submissions: Path) -> dict[str, dict[str, Path]]:
    """Map student -> chapter stem -> notebook path; raise ``SubmissionError`` on a bad layout."""
    root = Path(submissions)
    layout = f"expected {root}/<student>/<chapter>.ipynb, one folder per student"
    if not root.exists():
        raise SubmissionError(f"submissions folder {root} does not exist ({layout})")
    if not root.is_dir():
        raise SubmissionError(f"{root} is not a folder ({layout})")
    loose = sorted(p.name for p in root.glob("*.ipynb"))
    if loose:
        names = ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else "")
        raise SubmissionError(f"{len(loose)} notebook(s) lie directly in {root} ({names}): "
                              f"{layout}; move each into its student's folder")
    students = {d.name: {p.stem: p for p in sorted(d.glob("*.ipynb")) if p.is_file()}
                for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    if not any(students.values()):
        raise SubmissionError(f"no notebooks found in {root} ({layout})")
    return students


# ---- running one notebook --------------------------------------------------------------------
def execute(nb: nbformat.NotebookNode, timeout: float, quick: bool = True,
            cwd: Path = CHAPTERS, kernel_name: str = KERNEL_NAME) -> Execution:
    """Run ``nb`` (in place, outputs cleared first) in a fresh kernel within ``timeout`` seconds.

    Errors in cells do not stop the run. A run that hits the time limit, or whose kernel dies,
    stops there: ``Execution.stopped_at`` names the cell, ``stop_status`` says why.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    current = [0]

    def on_cell_execute(**kw: object) -> None:
        current[0] = int(kw["cell_index"])  # type: ignore[call-overload]

    deadline = time.monotonic() + timeout
    client = NotebookClient(
        nb, kernel_name=kernel_name, allow_errors=True, record_timing=False,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic() + 0.999)),
        resources={"metadata": {"path": str(cwd)}}, on_cell_execute=on_cell_execute)
    env = {"DMLIB_QUICK": "1" if quick else "0", "DMLIB_CHECKS_STRICT": "0",
           "MPLBACKEND": os.environ.get("MPLBACKEND", "module://matplotlib_inline.backend_inline")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    t0 = time.perf_counter()
    run = Execution(nb, 0.0)
    try:
        client.execute()
    except CellTimeoutError:
        run.stopped_at, run.stop_status = current[0], TIMEOUT
        run.stop_message = f"timeout after {timeout:g} s (cell {current[0]} was still running)"
    except DeadKernelError:
        run.stopped_at, run.stop_status = current[0], ERROR
        run.stop_message = (f"the kernel died in cell {current[0]} (out of memory, or the "
                            "code ended the process); later cells did not run")
    except Exception as e:  # kernel failed to start, a protocol error, ...: report, go on
        run.stopped_at, run.stop_status = current[0], ERROR
        run.stop_message = f"the notebook could not be run: {type(e).__name__}: {e}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    run.seconds = time.perf_counter() - t0
    return run


def _first_error(nb: nbformat.NotebookNode, before: int) -> str:
    for i, cell in enumerate(nb.cells[:before]):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                return f"cell {i} raised {o.get('ename')}: {o.get('evalue')}"
    return ""


def results(run: Execution, expected: list[Expected]) -> list[tuple[str, str, str]]:
    """(check label, status, message) for each expected check, read from the executed notebook."""
    cells = run.nb.cells
    out = []
    start = 0
    used_lines: set[tuple[int, int]] = set()
    for exp in expected:
        idx = next((i for i in range(start, len(cells)) if cells[i].cell_type == "code"
                    and cells[i].source.strip() == exp.cell_source), None)
        if idx is None:  # the check cell was edited or moved: take the first unused line
            idx = next((i for i in range(len(cells)) if cells[i].cell_type == "code"
                        and cells[i].source.strip() == exp.cell_source), None)
        else:
            start = idx + 1
        status, message = MISSING, ""
        candidates = [idx] if idx is not None else range(len(cells))
        hit = next(((i, j, ln) for i in candidates
                    for j, ln in enumerate(check_lines(cells[i]))
                    if ln[1] == exp.name and (i, j) not in used_lines), None)
        if hit is not None:
            i, j, (label, _, message) = hit
            used_lines.add((i, j))
            status = _LABEL[label]
            if status == FAIL and message.startswith(_RAISED):
                status = ERROR
        elif idx is None:
            message = (f"the check cell calling {exp.name} is not in the notebook and "
                       f"{exp.name} printed no result (was the cell edited or deleted?)")
        elif run.stopped_at is not None and idx >= run.stopped_at:
            status, message = run.stop_status or ERROR, run.stop_message
        else:
            err = next((o for o in cells[idx].get("outputs", [])
                        if o.get("output_type") == "error"), None)
            if err is not None:
                status, message = ERROR, f"{err.get('ename')}: {err.get('evalue')}"
                earlier = _first_error(run.nb, idx)
                if earlier:
                    message += f" (first error: {earlier})"
            else:
                message = f"the check cell (cell {idx}) ran but printed no result"
        out.append((exp.label, status, message))
    return out


def grade_notebook(path: Path, expected: list[Expected], timeout: float, quick: bool = True,
                   cwd: Path = CHAPTERS) -> tuple[list[tuple[str, str, str]], Execution | None]:
    """Grade one submitted notebook (read only); return its check results and the run."""
    try:
        nb = nbformat.reads(Path(path).read_bytes().decode("utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
    except Exception as e:
        msg = f"unreadable notebook: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return [(exp.label, UNREADABLE, msg) for exp in expected], None
    run = execute(nb, timeout, quick=quick, cwd=cwd)
    return results(run, expected), run


# ---- reports -------------------------------------------------------------------------------------
def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(header: list[str], rows: list[list[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def summarize(rows: list[Row]) -> list[tuple[str, str, int, int]]:
    """(student, chapter, passed, total) in the order the rows came; unknown chapters count 0/0."""
    acc: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        a = acc.setdefault((r.student, r.chapter), [0, 0])
        if r.status != UNKNOWN:
            a[0] += r.status == PASS
            a[1] += 1
    return [(s, c, p, t) for (s, c), (p, t) in acc.items()]


def _pct(p: int, t: int) -> str:
    return f"{100 * p / t:.1f}" if t else "0.0"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_reports(rows: list[Row], out: Path) -> dict[str, Path]:
    """Write grades.csv, summary.csv and summary.md into ``out``; return their paths."""
    out = Path(out)
    summary = summarize(rows)
    paths = {"grades": out / "grades.csv", "summary": out / "summary.csv",
             "markdown": out / "summary.md"}
    _write_atomic(paths["grades"], _csv(["student", "chapter", "check", "status", "message"],
                                        [[r.student, r.chapter, r.check, r.status, r.message]
                                         for r in rows]))
    _write_atomic(paths["summary"], _csv(["student", "chapter", "passed", "total", "score"],
                                         [[s, c, p, t, _pct(p, t)] for s, c, p, t in summary]))
    md = ["# Grades", ""]
    for student in dict.fromkeys(s for s, *_ in summary):
        md += [f"## {student}", "", "| chapter | check | status | message |", "|---|---|---|---|"]
        md += [f"| {r.chapter} | {r.check} | {r.status} | {_md_cell(r.message)} |"
               for r in rows if r.student == student]
        mine = [x for x in summary if x[0] == student]
        p, t = sum(x[2] for x in mine), sum(x[3] for x in mine)
        md += ["", "| chapter | passed | total | score % |", "|---|---:|---:|---:|"]
        md += [f"| {c} | {pc} | {tc} | {_pct(pc, tc)} |" for _, c, pc, tc in mine]
        md += [f"| **total** | **{p}** | **{t}** | **{_pct(p, t)}** |", ""]
    md += ["## Totals", "", "| student | passed | total | score % |", "|---|---:|---:|---:|"]
    for student in dict.fromkeys(s for s, *_ in summary):
        mine = [x for x in summary if x[0] == student]
        p, t = sum(x[2] for x in mine), sum(x[3] for x in mine)
        md.append(f"| {student} | {p} | {t} | {_pct(p, t)} |")
    _write_atomic(paths["markdown"], "\n".join(md) + "\n")
    return paths


# ---- the batch -----------------------------------------------------------------------------------
def grade(submissions: Path, out: Path = DEFAULT_OUT, timeout: float = DEFAULT_TIMEOUT,
          quick: bool = True, chapters: Path = CHAPTERS, log=sys.stderr) -> list[Row]:
    """Grade every ``submissions/<student>/<chapter>.ipynb``; write executed copies and reports."""
    students = discover(submissions)
    reference = reference_chapters(chapters)
    known = ", ".join(reference) or "(none)"
    assigned = [c for c in reference if any(c in nbs for nbs in students.values())]
    rows: list[Row] = []
    out = Path(out)
    for student, notebooks in students.items():
        for chapter, path in notebooks.items():
            if chapter not in reference:
                rows.append(Row(student, chapter, "-", UNKNOWN,
                                f"{path.name} is not a chapter of the course; known chapters: "
                                f"{known} (rename the file to its chapter's name)"))
                print(f"{student}/{path.name}: unknown chapter", file=log)
                continue
            try:
                res, run = grade_notebook(path, reference[chapter], timeout, quick, cwd=chapters)
            except Exception as e:  # a bug or an odd notebook must not stop the batch
                res, run = [(x.label, ERROR, f"the grader could not grade this notebook: "
                             f"{type(e).__name__}: {e}") for x in reference[chapter]], None
            rows += [Row(student, chapter, *r) for r in res]
            if run is not None:
                _write_atomic(out / "executed" / student / f"{chapter}.ipynb",
                              nbformat.writes(run.nb))
            n_pass = sum(r[1] == PASS for r in res)
            took = f" in {run.seconds:.1f} s" if run else ""
            note = f" ({run.stop_message})" if run and run.stop_status else ""
            note = note or (f" ({res[0][2]})" if res and res[0][1] == UNREADABLE else "")
            print(f"{student}/{chapter}: {n_pass}/{len(res)} checks pass{took}{note}", file=log)
        for chapter in assigned:
            if chapter not in notebooks:
                rows += [Row(student, chapter, e.label, MISSING,
                             f"not submitted: no {chapter}.ipynb in {student}/")
                         for e in reference[chapter]]
    write_reports(rows, out)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dmlib.grade", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("submissions", type=Path, help="folder of <student>/<chapter>.ipynb")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"folder for the reports and executed copies (default {DEFAULT_OUT})")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"wall-clock seconds per notebook (default {DEFAULT_TIMEOUT})")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="run with DMLIB_QUICK=1 (default): fast grading")
    mode.add_argument("--full", dest="quick", action="store_false",
                      help="run in full mode (DMLIB_QUICK=0), as students do")
    args = ap.parse_args(argv)
    if args.timeout <= 0:
        ap.error("--timeout must be positive")
    try:
        rows = grade(args.submissions, args.out, args.timeout, args.quick)
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarize(rows)
    print(f"graded {len({s for s, *_ in summary})} student(s), {len(summary)} notebook(s)")
    for student in dict.fromkeys(s for s, *_ in summary):
        mine = [x for x in summary if x[0] == student]
        p, t = sum(x[2] for x in mine), sum(x[3] for x in mine)
        print(f"  {student:20s} {p:3d}/{t:<3d} {_pct(p, t):>5s} %")
    print(f"reports: {args.out / 'grades.csv'}, {args.out / 'summary.csv'}, "
          f"{args.out / 'summary.md'}; executed copies in {args.out / 'executed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
