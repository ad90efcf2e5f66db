"""The grader's machinery: exercises, properties, loading a learner's file, the report.

An ``Exercise`` is a list of ``Property`` checks. Each check gets the learner's module
and either returns (pass) or raises ``MismatchError`` saying what differed, on which example
and where. Checks that draw examples with hypothesis run a fixed, derandomized budget,
so a grade takes seconds and is the same every time; hypothesis shrinks a failure, so
the report shows the smallest failing example it found.

A learner's exception never reaches them as a traceback: ``call`` turns
``NotImplementedError`` into "not started" and anything else into a one-line
``MismatchError`` naming the exception and the line of their file that raised it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings

# A few dozen examples, always the same ones: enough to find the usual mistakes, fast
# enough that `tinyres check` answers in seconds.
MAX_EXAMPLES = 30
GRADER_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    verbosity=Verbosity.quiet,
    report_multiple_bugs=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),  # no database, no "explain" phase
    suppress_health_check=list(HealthCheck),
)


class NotStartedError(BaseException):
    """The learner's code still raises NotImplementedError.

    A BaseException, like KeyboardInterrupt, so that hypothesis stops at once instead of
    shrinking an example that every input fails in the same way.
    """


class TimeLimitError(BaseException):
    """The learner's code ran past the time limit (a BaseException: hypothesis lets it through)."""


class MismatchError(Exception):
    """The learner's answer is wrong: ``what`` differed, on ``example``, with ``details``."""

    def __init__(self, what: str, example: str = "", details: tuple[str, ...] = (), hint: str = "",
                 decisive: bool = False):
        super().__init__(what)
        self.what, self.example, self.details = what, example, details
        self.hint = hint  # the cause, when this failure itself shows it (else the property's hint)
        # A result of the wrong kind (None, a list, not a Tensor) explains every other failure:
        # its hint comes before the causes read from the combination of failures.
        self.decisive = decisive


class InPlaceError(MismatchError):
    """The learner's code changed, or handed back, memory it does not own; raised from inside a
    call (a Function's backward writing into its saved output), so the inputs' property reports it."""


class UnavailableError(Exception):
    """The property needs something not installed (PyTorch): reported as skipped."""


def torch_or_skip() -> ModuleType:
    """PyTorch, for the properties that compare with it; skips them when it is absent."""
    try:
        import torch
    except ImportError:
        raise UnavailableError("PyTorch is not installed") from None
    return torch


@dataclass(frozen=True)
class Property:
    """One thing the grader checks; ``hint`` names the usual mistake when it alone fails.

    ``key`` is a short name the exercise's ``causes`` use to name combinations of failures.
    """

    name: str
    check: Callable[[ModuleType], None]
    hint: str
    key: str = ""


@dataclass(frozen=True)
class Cause:
    """The likely cause when exactly the properties ``failed`` (their keys) fail together.

    A wrong solution usually fails several properties at once, and each property's own
    hint then names one of several possible slips; the combination says which. The
    signatures come from the planted mistakes: each names the cause its report must show.
    """

    failed: frozenset[str]
    text: str


def cause(*failed: str, text: str) -> Cause:
    return Cause(frozenset(failed), text)


@dataclass(frozen=True)
class Exercise:
    id: str  # "ex08"
    lesson: str  # the lesson file's stem, "05-convolution"
    title: str
    filename: str  # the stub the learner edits, "ex08_conv2d_loops.py"
    properties: tuple[Property, ...]
    causes: tuple[Cause, ...] = ()

    def likely_cause(self, failed: list[str], shown: str = "", decisive: bool = False) -> tuple[str, str]:
        """(what failed, the hint) for the failed properties' keys (or names): the cause whose
        signature is exactly that set; else the cause a failure itself showed (``shown``: a
        wrong shape, a changed input, a line of theirs that makes float64); else, for one
        property, its own hint; else the cause matching the most of them; else the first
        failing property's own hint.

        Float32 accuracy fails whenever the values are wrong in float64 too: beside other
        failures it says nothing about the cause, so it is left out of the signature.
        """
        if not failed:
            return "", ""
        keys = frozenset(failed)
        if len(keys) > 1:
            keys = keys - {"float32 accuracy"}
        if shown and decisive:
            return "what your code did on the example shown", shown
        exact = [c for c in self.causes if c.failed == keys]
        if exact:
            return " + ".join(sorted(keys)), exact[0].text
        if shown:
            return "what your code did on the example shown", shown
        if len(keys) == 1:
            only = next(p for p in self.properties if (p.key or p.name) in keys)
            return only.key or only.name, only.hint
        # The largest signature inside what failed; on a tie, the one listed first.
        partial = sorted((c for c in self.causes if c.failed < keys), key=lambda c: -len(c.failed))
        if partial:
            return " + ".join(sorted(partial[0].failed)), partial[0].text
        first = next(p for p in self.properties if (p.key or p.name) in keys)
        return "the first failing property", first.hint


@dataclass
class PropertyResult:
    name: str
    passed: bool
    mismatch: MismatchError | None = None
    hint: str = ""
    skipped: str = ""  # why it could not run (it counts as passed)


@dataclass
class Report:
    exercise: Exercise
    path: Path
    state: str  # "passed", "failed", "not started", "missing", "cannot import" or "timed out"
    results: list[PropertyResult] = field(default_factory=list)
    problem: str = ""  # why it could not be graded

    @property
    def passed(self) -> bool:
        return self.state == "passed"

    def hint(self) -> tuple[str, str]:
        """(the failed properties it is inferred from, the likely cause); ('', '') if none failed."""
        by_name = {p.name: p.key or p.name for p in self.exercise.properties}
        failed = [r for r in self.results if not r.passed]
        if failed and all(r.mismatch is not None and r.mismatch.what.startswith("your code raised")
                          for r in failed):
            refused = next((r.mismatch.hint for r in failed if r.mismatch.hint), "")
            if refused:  # the library refused what the code did (REFUSED_BY_THE_LIBRARY): its cause
                return "the error your code raised", refused
            if any("read-only" in r.mismatch.what for r in failed):
                return "the error your code raised", (
                    "an array you were handed is read-only (a broadcast view, or another's data): write into "
                    "a copy of it (a.copy()), or make a new array (a = a + b) instead of adding in place")
            return "the error your code raised", (
                "your code raised an error on the example shown: the line it names is where to start; "
                "run that example by hand and print the shapes")
        hinted = [r.mismatch for r in failed if r.mismatch is not None and r.mismatch.hint]
        first = next((m for m in hinted if m.decisive), hinted[0] if hinted else None)
        return self.exercise.likely_cause([by_name[r.name] for r in failed], first.hint if first else "",
                                          first is not None and first.decisive)

    def summary(self) -> str:
        """One line: the state, with the count of passing properties when it failed."""
        if self.state == "failed":
            good = sum(r.passed for r in self.results)
            return f"failed ({good} of {len(self.results)} properties pass)"
        if self.state == "timed out":
            return self.problem
        return self.state

    def text(self) -> str:
        """The learner's report: per property pass/FAIL, the failing example, the hint."""
        ex = self.exercise
        lines = [f"{ex.id} {ex.title} (lesson {ex.lesson}): {self.path}"]
        if self.problem:
            lines.append(f"  {self.problem}")
        for r in self.results:
            mark = "skip" if r.skipped else "pass" if r.passed else "FAIL"
            lines.append(f"  {mark}  {r.name}" + (f" ({r.skipped})" if r.skipped else ""))
            if r.mismatch is not None:
                m = r.mismatch
                lines.append(f"        {m.what}")
                if m.example:
                    lines.append(f"        smallest failing example: {m.example}")
                lines.extend(f"        {d}" for d in m.details)
        failed = [r for r in self.results if not r.passed]
        which, text = self.hint()
        if len(failed) == 1:
            lines.append(f"  hint: {text}")
        elif failed:  # one cause for the combination, not one (often wrong) hint per property
            source = which if which.startswith(("the first failing", "what your code", "the error")) else (
                f"what fails together: {which}")
            lines.append(f"  hint (from {source}): {text}")
        lines.append(f"  result: {self.summary()}")
        return "\n".join(lines)


# ---- calling the learner's code -----------------------------------------------------------


_LIBRARY_DIRS = tuple(
    str(Path(p).resolve()) for p in {Path(__file__).parents[1], sys.prefix, sys.base_prefix, sys.exec_prefix}
)


def _learner_line(exc: BaseException) -> str:
    """' (line N of FILE: code)' for the deepest frame outside tinyres and Python's own files."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not str(Path(frame.filename).resolve()).startswith(_LIBRARY_DIRS):
            return f" (line {frame.lineno} of {Path(frame.filename).name}: {frame.line})"
    return ""


def call(fn: Callable[..., Any], *args: Any, example: str = "", **kwargs: Any) -> Any:
    """Run the learner's ``fn``; NotImplementedError means not started, other errors a MismatchError."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise NotStartedError(str(exc)) from None
    except RecursionError:
        raise MismatchError(
            "your code hit Python's recursion limit", example,
            ("a deep graph needs an explicit stack, not a recursive function",),
        ) from None
    except (MismatchError, NotStartedError):
        raise
    except SystemExit as exc:  # it would end `tinyres check` itself, without a word (Ctrl-C still stops)
        raise MismatchError(
            f"your code called sys.exit({exc.code!r}) (or exit()){_learner_line(exc)}", example,
            ("an exercise's function returns its result; sys.exit would end the whole program",),
        ) from None
    except Exception as exc:
        message = " ".join(str(exc).split())  # one line, whatever the exception's layout
        what = f"your code raised {type(exc).__name__}: {message}{_learner_line(exc)}"
        hint = next((h for start, h in REFUSED_BY_THE_LIBRARY if message.startswith(start)), "")
        raise MismatchError(what, example, hint=hint, decisive=bool(hint)) from None


# What the library itself refuses, as PyTorch does, and the cause each refusal shows: the hint
# for the learner's code that the library stopped (the error's message starts with the key).
REFUSED_BY_THE_LIBRARY = (
    ("assigned grad expected to be a Tensor",
     "a leaf's .grad is a Tensor, as in PyTorch: leaf.grad = Tensor(array)"),
    ("assigned grad has shape",
     "a leaf's .grad keeps the leaf's shape and dtype, as in PyTorch: start from the seed gradient in "
     "the root's dtype (np.ones(root.shape, dtype=root.dtype)) and keep each gradient in its tensor's dtype"),
)


# ---- comparing arrays -------------------------------------------------------------------------


def compare(
    name: str, expected: Any, got: Any, example: str = "", rtol: float = 1e-6, atol: float = 1e-9
) -> None:
    """Raise MismatchError unless ``got`` has ``expected``'s shape and values (to rtol, atol)."""
    expected = np.asarray(expected, dtype=np.float64)
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MismatchError(f"{name}: expected an array, got {type(got).__name__} ({exc})", example) from None
    if got.shape != expected.shape:
        raise MismatchError(f"{name} has shape {got.shape}, expected {expected.shape}", example,
                            hint=f"{name} has the wrong shape on the example shown: look at how its "
                                 f"size comes "
                            "about (an axis summed or kept, a size computed, a slice that crops)")
    if not np.all(np.isfinite(got)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        where = f"at index {index}: expected {expected[index]:.6g}, got {got[index]}"
        raise MismatchError(f"{name} is not finite", example, (where,))
    excess = np.abs(got - expected) - (atol + rtol * np.abs(expected))
    if got.size and excess.max() > 0:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), got.shape))
        raise MismatchError(
            f"{name}: wrong values",
            example,
            (f"worst index {index}: expected {expected[index]:.6g}, got {got[index]:.6g}",),
        )


def describe(**items: Any) -> str:
    """'x (2, 3) strided, stride 2' from keyword items; arrays show their shape and layout."""
    parts = []
    for key, value in items.items():
        if isinstance(value, np.ndarray):
            layout = "C order" if value.flags.c_contiguous else "non-contiguous"
            parts.append(f"{key} {value.shape} {layout}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def unreadable(exc: Exception, example: str = "") -> MismatchError:
    """The failure to report when the grader cannot read the learner's result (None, a list, a
    dict, a tuple of the wrong length): what went wrong in one line, never a traceback."""
    message = " ".join(str(exc).split())
    hint = ("your function returned None where a result was expected: is a `return` missing?"
            if "NoneType" in message else
            "check what your function returns against its docstring: the type (an array, a Tensor, a "
            "tuple of how many), and the shape")
    return MismatchError(f"the grader could not read your result ({type(exc).__name__}: {message})",
                         example, hint=hint, decisive=True)


def for_examples(
    strategy: Any,
    body: Callable[[Any], None],
    explicit: tuple[Any, ...] = (),
    max_examples: int = MAX_EXAMPLES,
) -> None:
    """Run ``body(case)`` on the ``explicit`` cases, then on ``max_examples`` cases drawn from
    ``strategy`` (the grader's fixed budget; fewer for whole networks).

    Hypothesis shrinks a failing case before re-raising its MismatchError, so the report
    shows the smallest one.
    """
    @functools.wraps(body)  # hypothesis derives a derandomized run's draws from body's source and name
    def guarded(*args: Any, **kwargs: Any) -> None:  # hypothesis passes the case by body's own name
        try:
            body(*args, **kwargs)
        except (MismatchError, UnavailableError):
            raise
        except Exception as exc:  # the learner's result is not what the check can read
            case = next(iter((*args, *kwargs.values())), None)
            raise unreadable(exc, f"the drawn case {case!r}") from None

    test = given(strategy)(guarded)
    for case in explicit:
        test = hypothesis.example(case)(test)
    settings(GRADER_SETTINGS, max_examples=max_examples)(test)()


# ---- the properties every exercise has: inputs left unchanged, the input's dtype kept --------

# What a check calls: the learner's function, its arguments, the example's description,
# and the float dtype the case was drawn in. ``invoke(mod, case)`` returns one.
Invocation = tuple[Callable[..., Any], tuple[Any, ...], str, Any]


def _snapshot(value: Any) -> Any:
    """A copy of everything in ``value`` a function could change in place: arrays, a
    Tensor's data and gradient, a module's parameters, buffers and gradients."""
    from tinyres.engine import Tensor
    from tinyres.nn import Module

    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, Tensor):
        return (value.detach().numpy().copy(), None if value.grad is None else value.grad.numpy().copy())
    if isinstance(value, Module):
        grads = {k: None if p.grad is None else p.grad.numpy().copy() for k, p in value.named_parameters()}
        return ({k: v.numpy().copy() for k, v in value.state_dict().items()}, grads)
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value]
    return None


def _changed(before: Any, after: Any, name: str) -> str | None:
    """Where ``after`` no longer equals its ``before`` snapshot, in words; None if unchanged."""
    from tinyres.engine import Tensor
    from tinyres.nn import Module

    if isinstance(after, np.ndarray):
        return None if np.array_equal(before, after, equal_nan=True) else f"{name}'s values"
    if isinstance(after, Tensor):
        grad = None if after.grad is None else after.grad.numpy()
        if not np.array_equal(before[0], after.detach().numpy(), equal_nan=True):
            return f"{name}'s values"
        if (before[1] is None) != (grad is None) or (grad is not None and not np.array_equal(before[1],
                                                                                                    grad)):
            return f"{name}.grad"
        return None
    if isinstance(after, Module):
        state, grads = before
        for key, value in after.state_dict().items():
            if key in state and not np.array_equal(state[key], value.numpy(), equal_nan=True):
                return f"{name}'s {key}"
        for key, param in after.named_parameters():
            grad = None if param.grad is None else param.grad.numpy()
            old = grads.get(key)
            if (old is None) != (grad is None) or (grad is not None and not np.array_equal(old, grad)):
                return f"{name}'s {key}.grad"
        return None
    if isinstance(after, (list, tuple)):
        for k, (b, a) in enumerate(zip(before, after)):
            found = _changed(b, a, f"{name}[{k}]")
            if found:
                return found
    return None


def _arrays(value: Any) -> list[np.ndarray]:
    """The NumPy arrays in ``value``: itself, or those in a list or tuple (not a Tensor's)."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays(v)]
    return []


def _shares(result: Any, arg: Any) -> bool:
    """Whether an array of ``result`` is ``arg`` or a view of its memory (a bounds check: cheap)."""
    return any(np.may_share_memory(r, a) for r in _arrays(result) for a in _arrays(arg) if r.size and a.size)


def inputs_unchanged(cases: Any, invoke: Callable[[ModuleType, Any], Invocation], names: str,
                     max_examples: int = MAX_EXAMPLES, owned: bool = False) -> Property:
    """The property that the learner's function leaves every argument as it found it.

    ``names`` are the arguments' names, comma-separated. The caller's array is the
    caller's: ``x -= mean`` on it changes data the caller still uses (the next layer's
    input, the optimizer's parameter), though the function's own result may be right.
    With ``owned``, the result must not share memory with an argument either: a result
    the caller keeps (a momentum buffer) must not change when the caller changes an input.
    """
    arg_names = [n.strip() for n in names.split(",")]

    def check(mod: ModuleType) -> None:
        def body(case: Any) -> None:
            try:
                fn, args, example, _ = invoke(mod, case)
            except MismatchError:  # building the case crashed: the properties of the values report it
                return
            before = [_snapshot(a) for a in args]
            try:
                result = call(fn, *args, example=example)
            except InPlaceError as exc:  # raised inside the call: it has no example yet
                raise InPlaceError(exc.what, exc.example or example, exc.details, exc.hint) from None
            except MismatchError:  # a crash: the properties of the values report it
                return
            for name, old, arg in zip(arg_names, before, args):
                where = _changed(old, arg, name)
                if where:
                    raise MismatchError(f"your code changed {where} in place", example,
                                        (f"{name} belongs to the caller: compute on a copy, or write "
                                         "x = x - m instead of x -= m",))
            for name, arg in zip(arg_names, args):
                if owned and _shares(result, arg):
                    raise MismatchError(
                        f"your result shares memory with {name}", example,
                        (f"the caller may change {name} later (the engine adds into .grad in place), "
                         "and your result would change with it",),
                        hint=f"a result that is {name} itself (or a view of it) changes when the caller "
                        f"changes {name}: return a copy (x.copy()) where you hand back an input")

        for_examples(cases, body, max_examples=max_examples)

    return Property("leaves its inputs unchanged (no in-place change of the caller's arrays)", check,
                    f"something changed {names} in place: `a -= b`, `a *= b`, `a[...] = ` and "
                    "`np.add(a, b, out=a)` write into the caller's array; use a = a - b", key="inputs")


# What makes an array float64 whatever the input (or float32 whatever the input), as a learner
# writes it: a constructor without dtype=, or a dtype asked for by name. Read from the learner's
# file, so the hint names their line instead of listing every possibility.
_FLOAT64_MAKERS = re.compile(r"np\.(zeros|ones|empty|full|eye|arange|linspace)\((?![^#]*dtype)")
_FLOAT64_NAMED = re.compile(r"(float64|dtype=float\b|astype\(float\)|np\.double)")
_FLOAT32_NAMED = re.compile(r"(float32|np\.single|float16|np\.half)")


def _dtype_suspects(mod: ModuleType, expected: np.dtype) -> list[tuple[int, str]]:
    """(line number, code) of the lines of the learner's file that may make the wrong dtype: for
    float32 input, those that make float64 arrays (np.zeros(shape), dtype=np.float64, astype(float));
    for float64 input, those that name float32 or float16."""
    try:
        source = Path(mod.__file__).read_text().splitlines()
    except (OSError, TypeError, AttributeError):
        return []
    found, in_docstring = [], False
    for number, line in enumerate(source, 1):
        code = line.split("#")[0].strip()
        if code.count('"""') % 2 or code.count("'''") % 2:
            in_docstring = not in_docstring
            continue
        if in_docstring or not code or code.startswith(("def ", "class ", "from ", "import ", "\"", "r\"")):
            continue
        if expected == np.float32:
            bad = _FLOAT64_MAKERS.search(code) or (_FLOAT64_NAMED.search(code) and "dtype=x" not in code)
            if bad and "float32" not in code and "_like" not in code:
                found.append((number, code))
        elif _FLOAT32_NAMED.search(code):
            found.append((number, code))
    return found


def _dtype_hint(expected: np.dtype, lines: list[tuple[int, str]]) -> str:
    """The cause of a wrong dtype, naming the learner's line when one shows it."""
    if expected == np.float64:
        where = f" (line {lines[0][0]})" if lines else ""
        return (f"something casts down to float32 or float16{where}: float64 input must stay float64; "
                "keep every step in the input's dtype")
    if not lines:
        return ("an array made with np.zeros(shape) or np.ones(shape) is float64 whatever the input: "
                "pass dtype=x.dtype (or use np.zeros_like)")
    number, code = lines[0]
    if _FLOAT64_MAKERS.search(code):
        return (f"line {number} makes an array without dtype=, and NumPy's default is float64 whatever "
                "the input: pass dtype=x.dtype (or use np.zeros_like / np.ones_like)")
    return (f"line {number} asks for float64 (a float64 accumulator, astype(float), dtype=np.float64): "
            "that is fine inside, but cast the result back to the input's dtype, .astype(x.dtype)")


def keeps_dtype(cases: Any, invoke: Callable[[ModuleType, Any], Invocation],
                outputs: Callable[[Any, tuple[Any, ...]], dict[str, Any]],
                                                               max_examples: int = MAX_EXAMPLES) -> Property:
    """The property that float32 input gives float32 output and float64 float64.

    ``outputs(result, args)`` names the arrays (or Tensors) of the learner's result (or, for
    a function that returns nothing, of its arguments) whose dtype must be the case's.
    A float64 result for float32 input doubles memory and hides the float32 rounding the
    rest of the network sees.
    """

    def check(mod: ModuleType) -> None:
        def body(case: Any) -> None:
            try:
                fn, args, example, dtype = invoke(mod, case)
                result = call(fn, *args, example=example)
            except MismatchError:  # a crash: the properties of the values report it
                return
            for name, value in outputs(result, args).items():
                array = value.detach().numpy() if hasattr(value, "detach") else value
                if isinstance(array, (list, tuple)):
                    raise MismatchError(f"{name} is a {type(array).__name__}, not an array", example,
                                        hint="return a NumPy array (np.array(rows, dtype=...) or .astype), "
                                        "not a Python list: its dtype is lost", decisive=True)
                got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
                if isinstance(array, np.ndarray) and array.dtype.kind != "f":
                    raise MismatchError(f"{name} has dtype {got}, not floats", example,
                                        hint=f"{name} should hold floating-point numbers: check what your "
                                        "function returns against its docstring", decisive=True)
                if got != np.dtype(dtype):
                    lines = _dtype_suspects(mod, np.dtype(dtype))
                    raise MismatchError(f"{name} is {got} for {np.dtype(dtype)} input", example,
                                        (f"expected {np.dtype(dtype)}: the result keeps the input's dtype",
                                         *(f"look at line {n}: {code}" for n, code in lines[:2])),
                                        hint=_dtype_hint(np.dtype(dtype), lines))

        for_examples(cases, body, max_examples=max_examples)

    return Property("float32 in, float32 out; float64 in, float64 out", check,
                    "an array made with np.zeros(shape) or np.ones(shape) is float64 whatever the input: "
                    "pass dtype=x.dtype (or use np.zeros_like)", key="dtype")


# ---- float32 accuracy: the learner's float32 result against the float64 truth --------------------

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23: the spacing of float32 numbers at 1
# The factor of the tolerance over n * eps32 * scale. The classic bound for a sum or dot product of
# n terms computed in float32 is |error| <= n * u * sum|terms| (u = eps32 / 2, Higham, Accuracy and
# Stability of Numerical Algorithms, 3.1); the + 2 in (n + 2) covers the few roundings that come
# after the sum (a scaling, a subtraction, exp or tanh, each within an ulp or two in NumPy). Factor 4
# leaves room for an order of operations other than the reference's. Measured on ex04, ex08 and ex11:
# PyTorch's own float32 results on the same cases stay within a sixteenth of this tolerance (they pass
# with factor 0.25, fail with 0.1; tests/test_grading.py holds them to an eighth). A product through
# float16 (eps 2^-10) was off by 3,750 eps32 * scale; E[x^2] - E[x]^2 by 178, against 24 allowed.
ACCURACY_FACTOR = 4.0


@functools.cache
def reference_solution(filename: str) -> ModuleType:
    """The reference solution ``lessons/solutions/<filename>`` beside the package, imported once."""
    path = Path(__file__).resolve().parents[2] / "lessons" / "solutions" / filename
    if not path.is_file():
        raise UnavailableError(f"the reference solution {filename} is not beside the package")
    return load(path)


def upcast(value: Any) -> Any:
    """``value`` with each float32 array (also in a list or tuple) turned into float64, the same values."""
    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        return value.astype(np.float64)
    if isinstance(value, (list, tuple)):
        return type(value)(upcast(v) for v in value)
    return value


def magnitudes(*positions: int) -> Callable[..., dict[str, Any]]:
    """The ``scale`` of a function linear in each argument at ``positions`` (all float arrays if none):
    the function itself run on their absolute values gives, per element, sum |terms|, the size the
    rounding errors of the sum are relative to (a result near 0 by cancellation keeps its large scale)."""

    def scale(run: Callable[[tuple], dict[str, Any]], args: tuple, case: Any) -> dict[str, Any]:
        chosen = positions or tuple(k for k, a in enumerate(args) if isinstance(a, np.ndarray))
        return run(tuple(np.abs(a) if k in chosen else a for k, a in enumerate(args)))

    return scale


def _normwise(run: Callable[[tuple], dict[str, Any]], args: tuple, case: Any) -> dict[str, Any]:
    """The default ``scale``: the largest |value| of each output (a normwise error bound)."""
    return {name: np.max(np.abs(value)) if np.size(value) else 1.0 for name, value in run(args).items()}


def within_float32(name: str, got: Any, truth: Any, scale: Any, n: int, example: str) -> None:
    """Raise MismatchError unless each element of ``got`` (a float32 result) is within
    ACCURACY_FACTOR * (n + 2) * eps32 * ``scale`` of ``truth`` (float64); a shape that differs
    is left to the properties of the values."""
    got, want = np.asarray(got, np.float64), np.asarray(truth, np.float64)
    if got.shape != want.shape:
        return
    unit = EPS32 * np.broadcast_to(np.asarray(scale, np.float64), want.shape)
    tol = ACCURACY_FACTOR * (n + 2) * unit
    error = np.abs(got - want)
    bad = ~(error <= tol)  # NaN counts as bad
    if bad.any():
        with np.errstate(all="ignore"):  # a scale of 0 (an exact 0 expected) gives inf
            ratio = np.where(bad, np.nan_to_num(error / unit, nan=np.inf), -1.0)
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), want.shape))
        raise MismatchError(
            f"{name} in float32 is off by {ratio[index]:.3g} eps32 * scale at index {index}; "
            f"float32 arithmetic done well stays within {ACCURACY_FACTOR * (n + 2):g} "
            f"(4 (n + 2) with n = {n})", example,
            (f"float64 truth {want[index]:.9g}, yours {got[index]:.9g}, "
             f"scale {unit[index] / EPS32:.3g}",
             "the truth is the reference run in float64 on the same float32 values"))


def float32_accurate(cases: Any, invoke: Callable[[ModuleType, Any], Invocation],
                     outputs: Callable[[Any, tuple[Any, ...]], dict[str, Any]], reference: str,
                     size: Callable[[tuple], int], scale: Callable[..., dict[str, Any]] = _normwise,
                     max_examples: int = MAX_EXAMPLES) -> Property:
    """The property that a float32 result is as accurate as float32 arithmetic allows.

    ``invoke(mod, (case, np.float32))`` gives the learner's float32 call. The truth is the
    reference solution (``lessons/solutions/<reference>``) run in float64 on the same values
    (the float32 inputs, upcast exactly). Each output element must be within

        ACCURACY_FACTOR * (n + 2) * eps32 * scale

    of it, where n = ``size(args)`` is the longest sum behind one output (the problem's size)
    and ``scale(run, args, case)`` the magnitude the error is relative to, per output (its
    conditioning; by default the output's largest |value|); ``run(args)`` runs the reference.
    A float64 check cannot see an intermediate kept in float16, or a formula that cancels
    catastrophically only in float32.
    """

    def check(mod: ModuleType) -> None:
        ref = reference_solution(reference)

        def body(case: Any) -> None:
            try:
                fn, args, example, _ = invoke(mod, (case, np.float32))
            except MismatchError:  # building the case crashed: the properties of the values report it
                return
            ref_fn, _, _, _ = invoke(ref, (case, np.float32))
            args64 = upcast(args)

            def run(a: tuple) -> dict[str, Any]:
                with np.errstate(all="ignore"):
                    return outputs(ref_fn(*a), a)

            truth, scales, n = run(args64), scale(run, args64, case), size(args64)
            try:
                with np.errstate(all="ignore"):
                    result = call(fn, *[a.copy() if isinstance(a, np.ndarray) else a for a in args],
                                  example=example)
            except MismatchError:  # a crash: the properties of the values report it
                return
            for name, value in outputs(result, args).items():
                got = np.asarray(value.detach().numpy() if hasattr(value, "detach") else value, np.float64)
                if truth.get(name) is None:
                    continue  # an output the reference does not have: the values' properties report it
                within_float32(name, got, truth[name], scales[name], n, example)

        for_examples(cases, body, max_examples=max_examples)

    return Property("float32 results as accurate as float32 allows (against the float64 truth)", check,
                    "something loses float32 precision: an intermediate in float16, or a formula that "
                    "cancels (E[x^2] - E[x]^2, a sum of large terms of opposite sign); keep every step in "
                    "the input's dtype and subtract before you square", key="float32 accuracy")


# ---- loading and grading ----------------------------------------------------------------------


def load(path: Path) -> ModuleType:
    """Import the learner's file as a fresh module (a new name each time, so edits count)."""
    load.count = getattr(load, "count", 0) + 1
    name = f"tinyres_exercise_{path.stem.replace('.', '_')}_{load.count}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so classes defined in it know their module (and file)
    try:
        spec.loader.exec_module(module)
    except SystemExit as stop:  # it would end `tinyres check` itself, without a word (Ctrl-C still stops)
        raise ImportError(f"your file calls sys.exit (or exit()) when imported (code {stop.code!r}); keep "
                          "such lines under `if __name__ == \"__main__\":`") from None
    return module


# Wall time for importing and checking one exercise: a learner's infinite loop must not
# hang ``tinyres check``. The slowest reference solution (ex07) took 21 s on 2 cores at load
# 7 (the others 1-6 s): the limit leaves it six times that.
TIME_LIMIT = 120.0


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeLimitError in the block after ``seconds`` of wall time (SIGALRM).

    Python runs a signal handler between two bytecodes, so a loop written in Python is
    stopped wherever it is; one long call into compiled code ends first. Signals reach
    only the main thread, so elsewhere (or without SIGALRM, on Windows) there is no limit.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeLimitError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def grade(exercise: Exercise, path: Path, limit: float = TIME_LIMIT) -> Report:
    """Grade the learner's file ``path`` against every property of ``exercise``, in ``limit`` s at most."""
    path = Path(path)
    if not path.is_file():
        return Report(exercise, path, "missing", problem=f"no file {path}")
    try:
        with time_limit(limit):
            return _grade(exercise, path)
    except TimeLimitError:
        return Report(exercise, path, "timed out", problem=f"timed out after {limit:g} s — an infinite loop?")


def _grade(exercise: Exercise, path: Path) -> Report:
    try:
        module = load(path)
    except Exception as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else _learner_line(exc)
        return Report(
            exercise, path, "cannot import", problem=f"importing it raised {type(exc).__name__}: {exc}{where}"
        )
    results = []
    for prop in exercise.properties:
        try:
            prop.check(module)
        except NotStartedError:
            return Report(exercise, path, "not started",
                          problem="it still raises NotImplementedError: open the file and fill it in")
        except MismatchError as m:
            results.append(PropertyResult(prop.name, False, m, m.hint or prop.hint))
        except UnavailableError as why:
            results.append(PropertyResult(prop.name, True, skipped=str(why)))
        except Exception as exc:  # a fixed example whose result the check cannot read
            m = unreadable(exc)
            results.append(PropertyResult(prop.name, False, m, m.hint))
        else:
            results.append(PropertyResult(prop.name, True))
    state = "passed" if all(r.passed for r in results) else "failed"
    return Report(exercise, path, state, results)
