"""The lessons: numbered Markdown files run by the test suite, and the code behind their figures.

A package so that ``lessons/conftest.py`` imports as ``lessons.conftest`` and does not
collide with ``tests/conftest.py`` when pytest collects doctests from both.
"""
