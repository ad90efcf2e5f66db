"""Graded exercises: the checks behind ``tinyres check``.

Each exercise is a stub in ``lessons/exercises/`` (a signature, a docstring with the
math and the shapes, ``raise NotImplementedError``) that the learner fills in. The
grader imports the learner's file and runs its properties: float64 gradient checks
over hypothesis-drawn shapes, strides, padding and memory layouts, and comparisons with
the library's own implementation, which the test suite holds to the same standards.

>>> [e.id for e in EXERCISES][:3]
['ex01', 'ex02', 'ex03']

Needs hypothesis (``pip install -e ".[lessons]"``).
"""

from __future__ import annotations

from tinyres.grading import autograd, blocks_and_training, conv_pool_norm
from tinyres.grading.core import Exercise, Report, grade

# In the order of the lessons (and of their ids).
EXERCISES: tuple[Exercise, ...] = tuple(
    sorted(autograd.EXERCISES + conv_pool_norm.EXERCISES + blocks_and_training.EXERCISES, key=lambda e: e.id)
)
BY_ID = {e.id: e for e in EXERCISES}

__all__ = ["BY_ID", "EXERCISES", "Exercise", "Report", "grade"]
