"""Every check against a corpus of student solutions (tests/checks_corpus.py): all wrong
ones are caught, at least 90% of them with a specific hint (not the generic "values
differ"), and every right one passes. The measured shares are printed (run with -s) and
written in docs/teaching.md."""

from collections import Counter

import pytest

from dmlib import checks
from checks_corpus import RIGHT, WRONG


def _specific(r) -> bool:
    return checks.GENERIC not in r.message and "round-off?" not in r.message


def _run(name, fn):
    return getattr(checks, name)(fn, verbose=False)


@pytest.mark.parametrize("name, label, fn", RIGHT, ids=[f"{n}:{l}" for n, l, _ in RIGHT])
def test_right_solutions_pass(name, label, fn):
    r = _run(name, fn)
    assert r.passed, f"{label}: {r.message}"


def test_wrong_solutions_are_caught_with_specific_hints(capsys):
    results = [(name, label, _run(name, fn)) for name, label, fn in WRONG]
    passed = [(n, lab) for n, lab, r in results if r.passed or r.status == checks.NOT_IMPLEMENTED]
    generic = [(n, lab, r.message) for n, lab, r in results if not r.passed and not _specific(r)]
    n = len(results)
    caught = n - len(passed)
    specific = caught - len(generic)
    per_check = Counter(name for name, _, _ in WRONG)
    with capsys.disabled():
        print(f"\nexercise-check corpus: {n} wrong solutions over {len(per_check)} checks, "
              f"{len(RIGHT)} right ones; caught {caught}/{n} ({100 * caught / n:.1f}%), "
              f"specific hint {specific}/{n} ({100 * specific / n:.1f}%)")
        for g in generic:
            print("  generic:", *g)
    assert n >= 150
    assert not passed, passed
    assert specific / n >= 0.9, generic
