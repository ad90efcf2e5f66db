"""Run the lessons: every ```python block of every ``lessons/*.md`` is a test.

Sybil collects the blocks of one lesson in order and runs them in one shared
namespace, as a reader pasting them into one Python session would. A ```pycon block
(a console transcript: ``>>>`` prompts and what they print) is a doctest, so the output
printed in the lesson is checked too; the fence name keeps it text for tools that make
notebooks of ```python blocks. A lesson skips a block that needs PyTorch with an HTML comment the web page
does not show: ``<!-- skip: next if(torch is None, reason="PyTorch is not installed") -->``.
"""

from doctest import ELLIPSIS, NORMALIZE_WHITESPACE

from sybil import Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser


class ConsoleBlockParser(PythonCodeBlockParser):
    """```pycon blocks, checked as doctests (every one starts with ``>>>``)."""

    def __init__(self, doctest_optionflags: int = 0) -> None:
        super().__init__(doctest_optionflags=doctest_optionflags)
        self.codeblock_parser = CodeBlockParser("pycon", PythonEvaluator(()))


pytest_collect_file = Sybil(
    parsers=[
        PythonCodeBlockParser(doctest_optionflags=ELLIPSIS | NORMALIZE_WHITESPACE),
        ConsoleBlockParser(doctest_optionflags=ELLIPSIS | NORMALIZE_WHITESPACE),
        SkipParser(),
    ],
    patterns=["[0-9][0-9]-*.md"],
).pytest()

# The exercises' stubs, solutions and planted mistakes share file names, and are graded by
# tests/test_grading.py (through `tinyres check`), not imported as test modules.
collect_ignore_glob = ["exercises/*", "solutions/*"]
