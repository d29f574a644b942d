"""Keep every chapter's jupytext pair (``X.py`` in py:percent, ``X.ipynb``) consistent.

The ``.py`` is the source one edits; the ``.ipynb`` carries the same inputs plus the
outputs of a full run. Commands::

    python -m dmlib.course.tools.pairs check   chapters   # fail (naming the file) if a pair differs
    python -m dmlib.course.tools.pairs sync    chapters   # write each .py's inputs into its .ipynb
    python -m dmlib.course.tools.pairs execute chapters [NAME ...]   # full-mode run, outputs stored
    python -m dmlib.course.tools.pairs views   chapters [NAME ...]   # saved views of stored outputs
    python -m dmlib.course.tools.pairs time    chapters   # time each chapter in quick and full mode
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

from .views import saved_views, view_problems

KERNEL_NAME = "dmlib-course"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python (diffusion course)", "language": "python"}
TIMINGS = Path(__file__).resolve().parents[3] / "bench" / "results" / "chapter_times.json"


def chapter_pairs(folder: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Return the (py, ipynb) pairs in ``folder`` and a list of problems (unpaired files)."""
    folder = Path(folder)
    problems = []
    pys = {p.stem: p for p in folder.glob("*.py") if not p.name.startswith("_")}
    nbs = {p.stem: p for p in folder.glob("*.ipynb")}
    for stem in sorted(set(pys) - set(nbs)):
        problems.append(f"{pys[stem]}: no paired .ipynb (run `make sync`)")
    for stem in sorted(set(nbs) - set(pys)):
        problems.append(f"{nbs[stem]}: no paired .py (run `jupytext --to py:percent {nbs[stem]}`)")
    pairs = [(pys[s], nbs[s]) for s in sorted(set(pys) & set(nbs))]
    return pairs, problems


def _inputs(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def compare_pair(py: Path, ipynb: Path) -> str | None:
    """Describe the first difference between the inputs of ``py`` and ``ipynb`` (None if equal)."""
    a, b = _inputs(jupytext.read(py)), _inputs(jupytext.read(ipynb))
    for i, (ca, cb) in enumerate(zip(a, b)):
        if ca != cb:
            first = next((ln for ln in ca[1].splitlines() if ln.strip()), "")[:60]
            return (f"{py} and {ipynb.name} differ at cell {i} ({ca[0]} cell starting "
                    f"{first!r}): edit the .py, then run `make sync`")
    if len(a) != len(b):
        return (f"{py} has {len(a)} cells but {ipynb.name} has {len(b)}: "
                f"edit the .py, then run `make sync`")
    return None


def executed_problems(ipynb: Path) -> list[str]:
    """A committed chapter must carry outputs of a clean run: every code cell executed, no errors."""
    nb = nbformat.read(ipynb, as_version=4)
    out = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or not c.source.strip():
            continue
        if c.get("execution_count") is None:
            out.append(f"{ipynb}: cell {i} has not been executed (run `make execute`; if you "
                       f"only ran it in JupyterLab, `git checkout {ipynb}` restores it)")
            break
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            out.append(f"{ipynb}: cell {i} stored an error output (fix it, then `make execute`)")
    return out + view_problems(nb, str(ipynb))


def check(folder: Path) -> list[str]:
    pairs, problems = chapter_pairs(folder)
    for py, nb in pairs:
        diff = compare_pair(py, nb)
        if diff:
            problems.append(diff)
        problems += executed_problems(nb)
    return problems


def _write_atomic(nb: nbformat.NotebookNode, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; notebooks are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_one(py: Path) -> Path:
    """Write the inputs of ``py`` into its ``.ipynb``, keeping the outputs of unchanged cells."""
    from jupytext.combine import combine_inputs_with_outputs

    ipynb = py.with_suffix(".ipynb")
    nb = jupytext.read(py)
    if ipynb.exists():
        nb = combine_inputs_with_outputs(nb, nbformat.read(ipynb, as_version=4), fmt="py:percent")
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    _write_atomic(nb, ipynb)
    return ipynb


def run_notebook(ipynb: Path, quick: bool, timeout: int | None = None,
                 kernel_name: str = KERNEL_NAME) -> tuple[nbformat.NotebookNode, float]:
    """Execute a notebook in a fresh kernel (cwd = its folder); return it and the seconds taken."""
    from nbclient import NotebookClient

    nb = nbformat.read(ipynb, as_version=4)
    old = os.environ.get("DMLIB_QUICK")
    os.environ["DMLIB_QUICK"] = "1" if quick else "0"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                       resources={"metadata": {"path": str(ipynb.parent)}}).execute()
        return nb, time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("DMLIB_QUICK", None)
        else:
            os.environ["DMLIB_QUICK"] = old


def _record_time(name: str, key: str, seconds: float) -> None:
    data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    data.setdefault(name, {})[key] = round(seconds, 1)
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    tmp = TIMINGS.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, TIMINGS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dmlib.course.tools.pairs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["check", "sync", "execute", "views", "time"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("names", nargs="*", help="chapter stems to restrict to (execute/time)")
    args = ap.parse_args(argv)
    pairs, problems = chapter_pairs(args.folder)
    if args.command != "check":  # sync creates the missing .ipynb of a new chapter
        pairs = [(p, p.with_suffix(".ipynb")) for p in sorted(args.folder.glob("*.py"))
                 if not p.name.startswith("_")]
        problems = [p for p in problems if "no paired .py" in p]
    if args.names:
        unknown = set(args.names) - {p.stem for p, _ in pairs}
        if unknown:
            print(f"unknown chapter(s): {sorted(unknown)}", file=sys.stderr)
            return 1
        pairs = [(p, n) for p, n in pairs if p.stem in args.names]
    if args.command == "check":
        problems = check(args.folder)
        for p in problems:
            print("PAIR CHECK FAILED:", p, file=sys.stderr)
        if not problems:
            print(f"pairs ok: {len(pairs)} chapters, inputs in sync, outputs stored")
        return 1 if problems else 0
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        return 1
    for py, _ in pairs:
        if args.command == "views":  # stored outputs only: no sync, no run
            nb_path = py.with_suffix(".ipynb")
            nb = nbformat.read(nb_path, as_version=4)
            n = saved_views(nb)
            if n:
                _write_atomic(nb, nb_path)
            print(f"{nb_path.name}: {n} saved view(s) rewritten")
            continue
        nb_path = sync_one(py)
        if args.command == "sync":
            print(f"synced {py.name} -> {nb_path.name}")
        elif args.command == "execute":
            nb, sec = run_notebook(nb_path, quick=False)
            saved_views(nb)  # what an untrusted notebook (a fresh clone) shows: see views.py
            _write_atomic(nb, nb_path)
            _record_time(py.stem, "full_cpu_s", sec)
            print(f"executed {nb_path.name} in full mode: {sec:.1f} s")
        else:  # time
            _, sec = run_notebook(nb_path, quick=True)
            _record_time(py.stem, "quick_s", sec)
            print(f"{nb_path.name}: quick mode {sec:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
