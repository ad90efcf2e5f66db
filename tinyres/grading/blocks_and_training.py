"""The checks of the model and training exercises (lessons 4 and 7 to 10): an SGD step with
momentum and weight decay, BasicBlock, PreActBlock, Bottleneck, one ResNet stage, and
per-block gradient norms with hooks.

A learner's module is graded on its state-dict keys and shapes (torchvision's, which
tinyres's own blocks have), its parameter count, and its outputs and gradients with the
library module's weights copied in, in training and in eval mode.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from hypothesis import strategies as st

import tinyres as tr
from tinyres import nn
from tinyres.engine import Tensor
from tinyres.grading.autograd import DTYPES, SEEDS, named_outputs
from tinyres.grading.core import (
    Exercise,
    MismatchError,
    Property,
    call,
    cause,
    compare,
    for_examples,
    inputs_unchanged,
    keeps_dtype,
    torch_or_skip,
)
from tinyres.models import blocks as library
from tinyres.optim import SGD

# ---- the blocks: ex12 to ex15 ----------------------------------------------------------------------

# Whole blocks cost more per case than one op; the cases are few and structural anyway.
BLOCK_EXAMPLES = 10


def _random_state(module: nn.Module, seed: int) -> dict[str, np.ndarray]:
    """Random values for every parameter and buffer (positive running variances)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value.numpy().copy()
        elif key.endswith("running_var") or (key.endswith(".weight") and value.ndim == 1):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        else:
            state[key] = rng.normal(0.0, 0.5, value.shape)
    return state


def _check_keys(mine: nn.Module, truth: nn.Module, example: str) -> None:
    want = {k: tuple(v.shape) for k, v in truth.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise MismatchError("the state-dict keys are not torchvision's", example,
                            (f"missing: {missing or 'none'}", f"unexpected: {extra or 'none'}"))
    for key, shape in want.items():
        if got[key] != shape:
            raise MismatchError(f"{key} has shape {got[key]}, torchvision's has {shape}", example)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    if count(mine) != count(truth):
        raise MismatchError(f"{count(mine)} parameters, torchvision's block has {count(truth)}", example)


def _block_properties(name: str, make_mine, make_truth, cases, what: str) -> tuple[Property, ...]:
    """Keys and counts, outputs in train and eval mode, gradients: for one kind of block."""

    def example_of(case):
        inplanes, planes, stride, size, _ = case
        return f"{what}({inplanes}, {planes}, stride={stride}), x (2, {inplanes}, {size}, {size})"

    def keys(mod):
        def body(case):
            example = example_of(case)
            mine = call(make_mine(mod), *case[:3], example=example)
            _check_keys(mine, make_truth(*case[:3]), example)

        for_examples(cases, body, max_examples=BLOCK_EXAMPLES)

    def outputs(mod, mode):
        def body(case):
            example = example_of(case) + f", {mode} mode"
            mine = call(make_mine(mod), *case[:3], example=example).double()
            truth = make_truth(*case[:3]).double()
            state = _random_state(truth, case[-1])
            truth.load_state_dict(state)
            call(mine.load_state_dict, state, example=example)
            getattr(mine, mode)(), getattr(truth, mode)()
            x = np.random.default_rng(case[-1]).standard_normal((2, case[0], case[3], case[3]))
            want = truth(Tensor(x))
            got = call(mine, Tensor(x), example=example)
            compare("the output", want.detach().numpy(), np.asarray(got), example, rtol=1e-9, atol=1e-12)

        for_examples(cases, body, max_examples=BLOCK_EXAMPLES)

    def gradients(mod):
        def body(case):
            example = example_of(case) + ", train mode"
            mine = call(make_mine(mod), *case[:3], example=example).double()
            truth = make_truth(*case[:3]).double()
            state = _random_state(truth, case[-1])
            truth.load_state_dict(state)
            call(mine.load_state_dict, state, example=example)
            rng = np.random.default_rng(case[-1])
            x = rng.standard_normal((2, case[0], case[3], case[3]))
            grads = []
            for module in (truth, mine):
                t = Tensor(x, requires_grad=True)
                out = call(module, t, example=example)
                (out * Tensor(rng.standard_normal(out.shape))).sum().backward()
                grads.append((t.grad.numpy(), module.conv1.weight.grad.numpy()))
                rng = np.random.default_rng(case[-1])
                rng.standard_normal(x.shape)  # the same upstream gradient for both
            compare("dL/dx", grads[0][0], grads[1][0], example, rtol=1e-8, atol=1e-10)
            compare("dL/d(conv1.weight)", grads[0][1], grads[1][1], example, rtol=1e-8, atol=1e-10)

        for_examples(cases, body, max_examples=BLOCK_EXAMPLES)

    def invoke(mod, case):
        case, dtype = case
        mine = call(make_mine(mod), *case[:3], example=example_of(case))
        mine = mine.float() if dtype == np.float32 else mine.double()
        x = Tensor(np.random.default_rng(case[-1]).standard_normal((2, case[0], case[3], case[3])).astype(dtype))
        return mine, (x,), example_of(case) + f", {np.dtype(dtype)}, train mode", dtype

    return (
        keeps_dtype(st.tuples(cases, DTYPES), invoke, named_outputs("the output"), BLOCK_EXAMPLES),
        inputs_unchanged(st.tuples(cases, DTYPES), invoke, "x", BLOCK_EXAMPLES),
        Property(f"state-dict keys, shapes and parameter count equal torchvision's {name}", keys,
                 "use torchvision's attribute names and bias=False on every convolution"),
        Property("output equals the library's with the same weights, training mode",
                 lambda mod: outputs(mod, "train"),
                 "check the order of the layers, where the stride goes, and what comes after the addition"),
        Property("output equals the library's with the same weights, eval mode",
                 lambda mod: outputs(mod, "eval"),
                 "in eval mode batch norm uses its running statistics: call the BN layers, don't "
                 "normalise by hand"),
        Property("gradients of the input and of conv1's weight equal the library's", gradients,
                 "the backward follows the forward: if the outputs match, look for an in-place change "
                 "of a tensor the graph still needs"),
    )


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Module | None:
    return library.projection_shortcut(inplanes, outplanes, stride) if (
        stride != 1 or inplanes != outplanes) else None


basic_cases = st.tuples(st.sampled_from([2, 4]), st.sampled_from([2, 4]), st.sampled_from([1, 2]),
                        st.integers(3, 5), SEEDS)
bottleneck_cases = st.tuples(st.sampled_from([4, 8]), st.sampled_from([1, 2]), st.sampled_from([1, 2]),
                             st.integers(3, 5), SEEDS)


def _with_shortcut(cls, expansion: int):
    return lambda inplanes, planes, stride: cls(
        inplanes, planes, stride, _downsample(inplanes, planes * expansion, stride))


EX12 = Exercise(
    "ex12", "07", "BasicBlock from nn layers", "ex12_basic_block.py",
    _block_properties("BasicBlock", lambda mod: _with_shortcut(mod.BasicBlock, 1),
                      _with_shortcut(library.BasicBlock, 1), basic_cases, "BasicBlock"),
)
EX13 = Exercise(
    "ex13", "07", "PreActBlock from nn layers", "ex13_preact_block.py",
    _block_properties("PreActBlock (He et al. 2016)", lambda mod: _with_shortcut(mod.PreActBlock, 1),
                      _with_shortcut(library.PreActBlock, 1), basic_cases, "PreActBlock"),
)
EX14 = Exercise(
    "ex14", "08", "Bottleneck from nn layers", "ex14_bottleneck.py",
    _block_properties("Bottleneck (v1.5)", lambda mod: _with_shortcut(mod.Bottleneck, 4),
                      _with_shortcut(library.Bottleneck, 4), bottleneck_cases, "Bottleneck"),
)

# ---- ex15: one stage --------------------------------------------------------------------------------

stage_cases = st.tuples(st.sampled_from(["BasicBlock", "Bottleneck"]), st.sampled_from([2, 4, 8]),
                        st.sampled_from([1, 2]), st.integers(1, 3), st.sampled_from([1, 2]))
BLOCKS = {"BasicBlock": library.BasicBlock, "Bottleneck": library.Bottleneck}


def _stage_example(case) -> str:
    block, inplanes, planes, blocks, stride = case
    return f"make_layer({block}, inplanes={inplanes}, planes={planes}, blocks={blocks}, stride={stride})"


def _stage_pair(mod: ModuleType, case):
    block, inplanes, planes, blocks, stride = case
    example = _stage_example(case)
    mine = call(mod.make_layer, BLOCKS[block], inplanes, planes, blocks, stride, example=example)
    truth = library.make_stage(BLOCKS[block], inplanes, planes, blocks, stride, library.projection_shortcut)
    return mine, truth, example


def _check_stage_keys(mod: ModuleType) -> None:
    def body(case):
        mine, truth, example = _stage_pair(mod, case)
        _check_keys(mine, truth, example)

    for_examples(stage_cases, body, max_examples=BLOCK_EXAMPLES)


def _check_stage_output(mod: ModuleType) -> None:
    def body(case):
        mine, truth, example = _stage_pair(mod, case)
        mine, truth = mine.double(), truth.double()
        state = _random_state(truth, 0)
        truth.load_state_dict(state)
        call(mine.load_state_dict, state, example=example)
        x = np.random.default_rng(1).standard_normal((2, case[1], 4, 4))
        got = np.asarray(call(mine, Tensor(x), example=example))
        compare("the stage's output", np.asarray(truth(Tensor(x))), got, example, rtol=1e-9, atol=1e-12)

    for_examples(stage_cases, body, max_examples=BLOCK_EXAMPLES)


def _invoke_stage(mod: ModuleType, case):
    case, dtype = case
    mine, _, example = _stage_pair(mod, case)
    mine = mine.float() if dtype == np.float32 else mine.double()
    x = Tensor(np.random.default_rng(1).standard_normal((2, case[1], 4, 4)).astype(dtype))
    return mine, (x,), example + f", {np.dtype(dtype)}", dtype


EX15 = Exercise(
    "ex15", "09", "one ResNet stage (_make_layer)", "ex15_make_layer.py",
    (
        keeps_dtype(st.tuples(stage_cases, DTYPES), _invoke_stage, named_outputs("the stage's output"),
                    BLOCK_EXAMPLES),
        inputs_unchanged(st.tuples(stage_cases, DTYPES), _invoke_stage, "x", BLOCK_EXAMPLES),
        Property("state-dict keys, shapes and parameter count equal torchvision's stage", _check_stage_keys,
                 "only the first block gets the stride and, when stride != 1 or the channels change, "
                 "the 1x1 conv + BN downsample; the later blocks take planes * expansion channels"),
        Property("output equals the library's stage with the same weights", _check_stage_output,
                 "the later blocks have stride 1 and no downsample"),
    ),
)

# ---- ex16: per-block gradient norms with hooks -----------------------------------------------------

norm_cases = st.tuples(st.integers(1, 4), SEEDS)


def _norm_case(case):
    depth, seed = case
    tr.manual_seed(seed)
    blocks = nn.Sequential(*[library.BasicBlock(3, 3) for _ in range(depth)]).double()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 4))
    weights = Tensor(rng.standard_normal((2, 3, 4, 4)))
    return blocks, x, (lambda out: (out * weights).sum()), f"{depth} BasicBlock(3, 3), x (2, 3, 4, 4)"


def _norms_truth(blocks, x, loss_fn) -> list[float]:
    h, inputs = Tensor(x, requires_grad=True), []
    for block in blocks:
        h.retain_grad()
        inputs.append(h)
        h = block(h)
    loss_fn(h).backward()
    return [float(np.linalg.norm(t.grad.numpy())) for t in inputs]


def _check_norms(mod: ModuleType) -> None:
    def body(case):
        blocks, x, loss_fn, example = _norm_case(case)
        want = _norms_truth(blocks, x, loss_fn)
        blocks.zero_grad()
        got = call(mod.block_gradient_norms, blocks, Tensor(x, requires_grad=True), loss_fn, example=example)
        got = np.asarray(got, dtype=np.float64)
        if got.shape != (len(want),):
            raise MismatchError(f"{got.size} norms for {len(want)} blocks", example)
        reversed_order = np.allclose(got, want[::-1], rtol=1e-9) and not np.allclose(got, want, rtol=1e-9)
        if len(want) > 1 and reversed_order:
            raise MismatchError("the norms come last block first", example,
                                ("hooks fire in the order backward reaches the tensors",))
        compare("the norms", want, got, example, rtol=1e-9)

    for_examples(norm_cases, body)


def _invoke_norms(mod: ModuleType, case):
    case, dtype = case
    blocks, x, loss_fn, example = _norm_case(case)
    blocks = blocks.float() if dtype == np.float32 else blocks
    x = x.astype(dtype)
    fn = lambda x_values: mod.block_gradient_norms(blocks, Tensor(x_values, requires_grad=True), loss_fn)  # noqa: E731
    return fn, (x,), example + f", {np.dtype(dtype)}", dtype


EX16 = Exercise(
    "ex16", "10", "per-block gradient norms with hooks", "ex16_block_gradient_norms.py",
    (
        keeps_dtype(st.tuples(norm_cases, DTYPES), _invoke_norms,
                    lambda result, args: {"the norms": np.asarray(result)}
                    if np.asarray(result).dtype != np.float64 else {}),
        inputs_unchanged(st.tuples(norm_cases, DTYPES), _invoke_norms, "x"),
        Property("one norm of dL/d(block input) per block, first block first", _check_norms,
                 "hook each block's input (before calling the block), not its output, and store the "
                 "norms by block index: hooks fire last block first"),
    ),
)

# ---- ex07: an SGD step ----------------------------------------------------------------------------

sgd_cases = st.tuples(st.sampled_from([0.0, 0.9]), st.sampled_from([0.0, 5e-4, 0.1]), st.integers(1, 4),
                      SEEDS)


def _sgd_compare(mod: ModuleType, case, learning_rates) -> None:
    momentum, weight_decay, steps, seed = case
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(steps)]
    example = (f"p (3, 2), {steps} steps, lr {learning_rates[:steps]}, momentum {momentum}, "
               f"weight_decay {weight_decay}")
    w = Tensor(p0.copy(), requires_grad=True)
    opt = SGD([w], lr=learning_rates[0], momentum=momentum, weight_decay=weight_decay)
    p, buffer = p0.copy(), None
    for step, g in enumerate(grads):
        opt.param_groups[0]["lr"] = learning_rates[step]
        w.grad = Tensor(g.copy())
        opt.step()
        p, buffer = call(mod.sgd_step, p, g.copy(), buffer, learning_rates[step], momentum, weight_decay,
                         example=example)
        compare(f"p after step {step + 1}", w.detach().numpy(), p, example, rtol=1e-12, atol=1e-14)


def _check_sgd(mod: ModuleType, changing_lr: bool, weight_decay: bool) -> None:
    rates = [0.1, 0.05, 0.02, 0.01] if changing_lr else [0.1] * 4

    def body(case):
        momentum, decay, steps, seed = case
        _sgd_compare(mod, (momentum, decay if weight_decay else 0.0, steps, seed), rates)

    for_examples(sgd_cases, body)


def _check_sgd_torch(mod: ModuleType) -> None:
    torch = torch_or_skip()

    def body(case):
        momentum, weight_decay, steps, seed = case
        rng = np.random.default_rng(seed)
        p0 = rng.standard_normal((3, 2))
        w = torch.tensor(p0.copy(), requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1, momentum=momentum, weight_decay=weight_decay)
        p, buffer = p0.copy(), None
        example = (f"p (3, 2), {steps} steps, lr 0.1 then halved, momentum {momentum}, "
                   f"weight_decay {weight_decay}")
        for step in range(steps):
            g = rng.standard_normal((3, 2))
            lr = 0.1 / 2**step
            opt.param_groups[0]["lr"] = lr
            w.grad = torch.tensor(g.copy())
            opt.step()
            p, buffer = call(mod.sgd_step, p, g.copy(), buffer, lr, momentum, weight_decay, example=example)
            compare(f"p after step {step + 1} (against PyTorch)", w.detach().numpy(), p, example,
                    rtol=1e-12, atol=1e-14)

    for_examples(sgd_cases, body)


def _invoke_sgd(mod: ModuleType, case):
    (momentum, weight_decay, steps, seed), dtype = case
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal((3, 2)).astype(dtype)
    buffer = rng.standard_normal((3, 2)).astype(dtype) if momentum and steps > 1 else None
    fn = lambda p, g, buffer: mod.sgd_step(p, g, buffer, 0.1, momentum, weight_decay)  # noqa: E731
    example = (f"p (3, 2) {np.dtype(dtype)}, buffer {'None' if buffer is None else '(3, 2)'}, lr 0.1, "
               f"momentum {momentum}, weight_decay {weight_decay}")
    return fn, (p, g, buffer), example, dtype


EX07 = Exercise(
    "ex07", "04", "an SGD step with momentum and weight decay", "ex07_sgd_step.py",
    (
        Property("equals tinyres.optim.SGD without weight decay, constant lr",
                 lambda mod: _check_sgd(mod, changing_lr=False, weight_decay=False),
                 "first step b = g; later b = momentum * b + g; then p = p - lr * b"),
        Property("equals SGD with weight decay (added to the gradient before the momentum buffer)",
                 lambda mod: _check_sgd(mod, changing_lr=False, weight_decay=True),
                 "add weight_decay * p to the gradient first, so the decay goes through the buffer too"),
        Property("equals SGD when the learning rate changes between steps (lr scales the whole buffer)",
                 lambda mod: _check_sgd(mod, changing_lr=True, weight_decay=True),
                 "keep lr out of the buffer: b = momentum * b + g, p = p - lr * b"),
        Property("equals torch.optim.SGD", _check_sgd_torch,
                 "tinyres's SGD and PyTorch's agree: compare your order of decay, momentum and lr"),
        keeps_dtype(st.tuples(sgd_cases, DTYPES), _invoke_sgd,
                    lambda result, args: {"the new p": result[0]} | (
                        {} if result[1] is None else {"the new buffer": result[1]})),
        inputs_unchanged(st.tuples(sgd_cases, DTYPES), _invoke_sgd, "p, g, buffer"),
    ),
)

EXERCISES = (EX12, EX13, EX14, EX15, EX16, EX07)
