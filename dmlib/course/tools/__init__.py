"""Course tooling (not lesson material): jupytext pairs, student builds.

``python -m dmlib.course.tools.pairs {check,sync,execute} chapters`` and
``python -m dmlib.course.tools.student chapters build/student``; the Makefile calls them.
"""
