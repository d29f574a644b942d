"""Every check against a corpus of student solutions (tests/checks_corpus.py), written from
the exercise statements: all wrong ones are caught, and the share that gets a specific hint
(anything but the generic "values differ ... re-read the equation" or "round-off?") is
measured on two lists:

* WRONG (the development list): the checks' mistake lists were widened after a first run
  on it, so its share says how well the checks name the mistakes they know (target: 90%);
* HELD_OUT, written afterwards and never used to add mistakes: its share says how the
  hints generalise to mistakes nobody listed (named mistakes, or where the error is).

The shares are printed (run pytest with -s, or see the captured output) and quoted in
docs/teaching.md. Every RIGHT solution must pass."""

import pytest

from dmlib import checks
from checks_corpus import HELD_OUT, RIGHT, WRONG


def _specific(r) -> bool:
    return checks.GENERIC not in r.message and "round-off?" not in r.message


def _run(name, fn):
    return getattr(checks, name)(fn, verbose=False)


@pytest.mark.parametrize("name, label, fn", RIGHT, ids=[f"{n}:{l}" for n, l, _ in RIGHT])
def test_right_solutions_pass(name, label, fn):
    r = _run(name, fn)
    assert r.passed, f"{label}: {r.message}"


def _measure(corpus):
    results = [(name, label, _run(name, fn)) for name, label, fn in corpus]
    escaped = [(n, lab) for n, lab, r in results if r.passed or r.status == checks.NOT_IMPLEMENTED]
    generic = [(n, lab, r.message) for n, lab, r in results if not r.passed and not _specific(r)]
    n = len(results)
    return n, n - len(escaped), n - len(escaped) - len(generic), escaped, generic


def test_wrong_solutions_are_caught_with_specific_hints(capsys):
    dev = _measure(WRONG)
    held = _measure(HELD_OUT)
    lines = []
    for name, (n, caught, specific, _, _) in (("development list", dev), ("held-out list", held),
                                             ("both", tuple(a + b for a, b in zip(dev[:3], held[:3]))
                                              + ([], []))):
        lines.append(f"{name}: {n} wrong solutions, caught {caught}/{n} ({100 * caught / n:.1f}%), "
                     f"specific hint {specific}/{n} ({100 * specific / n:.1f}%)")
    with capsys.disabled():
        print("\nexercise-check corpus over 27 checks, "
              f"{len(RIGHT)} right solutions all passing:\n  " + "\n  ".join(lines))
    assert dev[0] >= 150 and len({n for n, _, _ in WRONG}) == 27
    assert not dev[3] and not held[3], (dev[3], held[3])          # every wrong one is caught
    assert dev[2] / dev[0] >= 0.9, dev[4]
    assert held[2] / held[0] >= 0.45, held[4]                      # measured 50%: keep it there
