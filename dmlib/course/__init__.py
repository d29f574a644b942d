"""The course machinery: what turns dmlib into a course, kept apart from the library.

==================  =========================================================
subpackage/module   what it holds
==================  =========================================================
``checks``          exercise checks with hints, one submodule a chapter; chapters
                    write ``from dmlib import checks``
``grade``           the autograder (``make grade``, ``python -m dmlib.course.grade``)
``tools``           jupytext pairs (``tools.pairs``) and student versions
                    (``tools.student``)
==================  =========================================================

The diffusion core never imports from here (``tests/test_structure.py``).
"""
