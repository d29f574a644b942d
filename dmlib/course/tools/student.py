"""Build student versions of the chapters (``make student``).

Every exercise sits in a function whose body (or part of it) is fenced by nbgrader's
markers::

    def q_sample(schedule, x0, t, eps):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

The student version replaces each fenced block by ``raise NotImplementedError()`` at the
same indentation, clears all outputs, and adds nbgrader cell metadata (solution cells
editable, check cells read-only) so the files also work with nbgrader. Each locked (check) cell
also carries ``metadata.nbgrader.checksum`` (``compute_checksum``, nbgrader's recipe): the
grader (``dmlib.course.grade``) recomputes it and grades a submission whose locked cell was edited
as ``tampered``. Usage::

    python -m dmlib.course.tools.student chapters build/student
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
_CHECK_CALL = re.compile(r"\bchecks?\.check_\w+\(|\bcheck_\w+\(")


class SolutionMarkerError(ValueError):
    """Unbalanced or nested solution markers in a chapter cell."""


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block by a stub.

    Returns the new source and the number of blocks replaced. Raises
    ``SolutionMarkerError`` (naming ``where``) on unbalanced or nested markers.
    """
    out: list[str] = []
    n = 0
    inside = False
    for lineno, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SolutionMarkerError(f"{where}, line {lineno}: nested {BEGIN!r}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB.splitlines()]
            n += 1
        elif stripped == END:
            if not inside:
                raise SolutionMarkerError(f"{where}, line {lineno}: {END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}: {BEGIN!r} is never closed by {END!r}")
    return "\n".join(out), n


def solution_blocks(source: str) -> list[list[str]]:
    """The solution blocks of a cell, each as its lines including both markers."""
    blocks, cur = [], None
    for line in source.splitlines():
        if line.strip() == BEGIN:
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.strip() == END:
                blocks.append(cur)
                cur = None
    return blocks


def paste_solutions(student_source: str, solved_source: str) -> str:
    """Put the solution blocks of ``solved_source`` back in place of the stubs of
    ``student_source`` (in order): what a student does when they finish an exercise."""
    blocks = solution_blocks(solved_source)
    stub = STUB.splitlines()
    lines, out, k, i = student_source.splitlines(), [], 0, 0
    while i < len(lines):
        if lines[i].strip() == stub[0] and i + 1 < len(lines) and lines[i + 1].strip() == stub[1]:
            if k >= len(blocks):
                raise SolutionMarkerError("more stubs than solution blocks")
            out += blocks[k]
            k, i = k + 1, i + 2
        else:
            out.append(lines[i])
            i += 1
    if k != len(blocks):
        raise SolutionMarkerError(f"{len(blocks)} solution blocks but {k} stubs")
    return "\n".join(out)


def compute_checksum(cell: nbformat.NotebookNode) -> str:
    """The md5 checksum of a cell that has nbgrader metadata, by nbgrader's recipe.

    It covers the cell's source and type, its nbgrader flags (grade, solution, locked), its
    ``grade_id`` and, for grade cells, its points, so editing any of them changes it. Raises
    ``ValueError`` if the cell has no ``metadata.nbgrader`` with a ``grade_id``.
    """
    meta = cell.get("metadata", {}).get("nbgrader")
    if not isinstance(meta, dict) or not isinstance(meta.get("grade_id"), str):
        raise ValueError("the cell has no nbgrader metadata with a grade_id to checksum")
    grade, solution = bool(meta.get("grade", False)), bool(meta.get("solution", False))
    locked = False if solution else (True if grade else bool(meta.get("locked", False)))
    m = hashlib.md5()
    for part in (cell.get("source", ""), cell.get("cell_type", ""), str(grade), str(solution),
                 str(locked), meta["grade_id"]):
        m.update(str(part).encode("utf-8"))
    if grade:
        m.update(str(float(meta.get("points", 0))).encode("utf-8"))
    return m.hexdigest()


def studentize(nb: nbformat.NotebookNode, name: str) -> tuple[nbformat.NotebookNode, int]:
    """Return a student copy of ``nb`` (solutions stubbed, outputs cleared) and the exercise count."""
    nb = nbformat.from_dict(nb)  # deep copy
    n_ex = 0
    for i, cell in enumerate(nb.cells):
        meta = {"schema_version": 3, "grade": False, "locked": False, "solution": False,
                "task": False, "grade_id": f"{name}-cell-{i}"}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            new, k = strip_solutions(cell.source, where=f"{name}, cell {i}")
            if k:
                n_ex += k
                cell.source = new
                meta.update(solution=True, grade_id=f"{name}-exercise-{n_ex}")
            elif _CHECK_CALL.search(cell.source):
                meta.update(locked=True)  # the check after an exercise is read-only
                cell.metadata["editable"] = False
                cell.metadata["deletable"] = False
        cell.metadata["nbgrader"] = meta
        if meta["locked"]:
            cell.metadata["nbgrader"]["checksum"] = compute_checksum(cell)
    return nb, n_ex


def build(src: Path, dst: Path) -> dict[str, int]:
    """Write a student version of every ``src/*.ipynb`` into ``dst``; return exercises per chapter."""
    src, dst = Path(src), Path(dst)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no chapters (*.ipynb) found in {src}")
    dst.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in notebooks:
        nb, n = studentize(nbformat.read(path, as_version=4), path.stem)
        nbformat.write(nb, dst / path.name)
        counts[path.stem] = n
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dmlib.course.tools.student", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args(argv)
    try:
        counts = build(args.src, args.dst)
    except (SolutionMarkerError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, n in counts.items():
        print(f"{args.dst / (name + '.ipynb')}: {n} exercise(s) stubbed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
