"""The checks of the model and training exercises (lessons 4 and 7 to 10): an SGD step with
momentum and weight decay, BasicBlock, PreActBlock, Bottleneck, one ResNet stage, and
per-block gradient norms with hooks.

A learner's module is graded on its state-dict keys and shapes (torchvision's, which
tinyres's own blocks have), its parameter count, and its outputs and gradients with the
library module's weights copied in, in training and in eval mode.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

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
    float32_accurate,
    for_examples,
    inputs_unchanged,
    keeps_dtype,
    torch_or_skip,
    within_float32,
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
    blocks = [id(b) for b in mine] if isinstance(mine, nn.Sequential) else []
    if len(set(blocks)) < len(blocks):
        raise MismatchError("the same block object appears more than once in the stage", example,
                            (f"missing: {missing or 'none'}",),
                            hint="[block(...)] * n repeats one object: the copies share their weights and "
                            "the state dict lists them once; build a new block for each position")
    if missing or extra:
        raise MismatchError("the state-dict keys are not torchvision's", example,
                            (f"missing: {missing or 'none'}", f"unexpected: {extra or 'none'}"))
    for key, shape in want.items():
        if got[key] != shape:
            raise MismatchError(f"{key} has shape {got[key]}, torchvision's has {shape}", example,
                                hint=f"{key.rsplit('.', 1)[0]} has the wrong number of channels: follow the "
                                "channels through the forward, layer by layer (what each layer receives)")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    if count(mine) != count(truth):
        raise MismatchError(f"{count(mine)} parameters, torchvision's block has {count(truth)}", example,
                            hint="the same layer object used twice counts its parameters once: make a new "
                            "layer (a new block) for each place it is used")
    theirs = dict(mine.named_modules())
    for name, layer in truth.named_modules():
        if not isinstance(layer, nn.BatchNorm2d):
            continue
        for attribute in ("eps", "momentum"):
            yours, want = getattr(theirs.get(name), attribute, None), getattr(layer, attribute)
            if yours != want:
                raise MismatchError(f"{name} has {attribute} {yours}, the library's {want}", example,
                                    hint="keep BatchNorm2d's defaults (eps 1e-5, momentum 0.1): they are "
                                    "torchvision's, and its weights were trained with them")


def module_float32(build: Any, cases: Any, max_examples: int = BLOCK_EXAMPLES) -> Property:
    """The property that the learner's module in float32 stays as close to the library's module in
    float64 (the same weights, the same float32 input values, training mode) as float32 allows.

    ``build(mod, case)`` gives (the learner's module, the library's, the input's shape, the example).
    n is the sum of the convolutions' fan-ins (the longest chain of sums behind one output) and the
    scale the output's largest |value| (normwise). Measured: the library's own blocks in float32 stay
    within 1.3 eps32 * scale here, against 4 (n + 2) >= 64 allowed. (Inputs shifted far from 0, where a
    variance as E[x^2] - E[x]^2 would cancel, were tried: the identity shortcut then dominates the
    output's scale, and the check learns nothing more.)
    """

    def check(mod: ModuleType) -> None:
        def body(case):
            mine, truth, shape, example = build(mod, case)
            example += ", float32, train mode"
            truth = truth.double()
            state = _random_state(truth, case[-1])
            truth.load_state_dict(state)
            call(mine.load_state_dict, state, example=example)
            mine = mine.float()
            x = np.random.default_rng(case[-1]).standard_normal(shape).astype(np.float32)
            want = truth(Tensor(x.astype(np.float64))).detach().numpy()
            got = call(mine, Tensor(x), example=example)
            got = got.detach().numpy() if hasattr(got, "detach") else np.asarray(got)
            n = sum(int(np.prod(v.shape[1:])) for v in state.values() if np.ndim(v) == 4)
            within_float32("the output", got, want, np.abs(want).max(), n, example)

        for_examples(cases, body, max_examples=max_examples)

    return Property("float32 output as accurate as float32 allows (against the library in float64)", check,
                    "something loses float32 precision on the way: keep every layer in the module's dtype, "
                    "and use the nn layers rather than arithmetic by hand",
                    key="float32 accuracy")


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

    def running_stats(mod):
        def body(case):
            example = example_of(case) + ", one training-mode forward"
            mine = call(make_mine(mod), *case[:3], example=example).double()
            truth = make_truth(*case[:3]).double()
            state = _random_state(truth, case[-1])
            truth.load_state_dict(state)
            call(mine.load_state_dict, state, example=example)
            x = np.random.default_rng(case[-1]).standard_normal((2, case[0], case[3], case[3]))
            truth(Tensor(x))
            call(mine, Tensor(x), example=example)
            got = mine.state_dict()
            for key, value in truth.state_dict().items():
                if key.endswith(("running_mean", "running_var", "num_batches_tracked")) and key in got:
                    compare(f"{key} after the forward", value.numpy(), got[key].numpy(), example,
                            rtol=1e-9, atol=1e-12)

        for_examples(cases, body, max_examples=BLOCK_EXAMPLES // 2)

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
        x = Tensor(np.random.default_rng(case[-1]).standard_normal((2, case[0], case[3],
                                                                                     case[3])).astype(dtype))
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
        Property("a training-mode forward moves the running statistics as the library's does", running_stats,
                 "the running mean and variance move by BatchNorm2d's momentum (0.1 by default) at each "
                 "training-mode forward: keep its defaults, and call each BN layer once per forward",
                 key="running stats"),
        module_float32(lambda mod, case: (call(make_mine(mod), *case[:3], example=example_of(case)),
                                          make_truth(*case[:3]), (2, case[0], case[3], case[3]),
                                          example_of(case)), cases),
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
        module_float32(lambda mod, case: (*_stage_pair(mod, case)[:2], (2, case[1], 4, 4),
                                          _stage_example(case)),
                       stage_cases),
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
        if np.allclose(got, want, rtol=1e-2) and not np.allclose(got, want, rtol=1e-9):
            raise MismatchError("the norms are close, not exact (off by more than 1e-9 relative)", example,
                                hint="the norms lose precision: compute them from the float64 gradient, "
                                "np.sqrt(np.sum(g ** 2)), with nothing cast to float16 or float32 on the way")
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


def _check_sgd_no_buffer(mod: ModuleType) -> None:
    p, g = np.ones((3, 2)), np.full((3, 2), 0.5)
    for decay in (0.0, 5e-4):
        example = f"p (3, 2), lr 0.1, momentum 0, weight_decay {decay:g}"
        _, buffer = call(mod.sgd_step, p.copy(), g.copy(), None, 0.1, 0.0, decay, example=example)
        if buffer is not None:
            raise MismatchError("with momentum 0 the buffer returned is not None", example,
                                ("PyTorch's SGD keeps no momentum buffer when momentum is 0",))


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


def _sgd_outputs(result, args) -> dict:
    return {"the new p": result[0]} | ({} if result[1] is None else {"the new buffer": result[1]})


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
        Property("with momentum 0 no buffer is kept (None)", _check_sgd_no_buffer,
                 "momentum 0 means no momentum buffer: return None for it, as the docstring says"),
        Property("equals torch.optim.SGD", _check_sgd_torch,
                 "tinyres's SGD and PyTorch's agree: compare your order of decay, momentum and lr"),
        keeps_dtype(st.tuples(sgd_cases, DTYPES), _invoke_sgd,
                    _sgd_outputs),
        inputs_unchanged(st.tuples(sgd_cases, DTYPES), _invoke_sgd, "p, g, buffer", owned=True),
        # A few elementwise operations: n = 3 and the scale of their terms, |p| + |g| + |buffer|.
        float32_accurate(sgd_cases, _invoke_sgd, _sgd_outputs, "ex07_sgd_step.py", size=lambda args: 3,
                         scale=lambda run, args, case: dict.fromkeys(
                             ("the new p", "the new buffer"),
                             sum(np.abs(a) for a in args if a is not None) + np.abs(args[0]))),
    ),
)



# ---- ex19: Kaiming's variance argument -----------------------------------------------------------

SLOPES = st.sampled_from([0.0, 0.5, 1.0])  # ReLU, a leaky ReLU, the identity: gains 2, 1.6, 1
init_cases = st.tuples(st.sampled_from([(512, 256), (64, 16, 3, 3), (128, 8, 5, 5)]), SLOPES, SEEDS)


def _check_init_variance(mod: ModuleType) -> None:
    def body(case):
        shape, slope, seed = case
        example = f"shape {shape}, negative_slope {slope}"
        w = np.asarray(call(mod.kaiming_normal, shape, slope, np.random.default_rng(seed), np.float64,
                            example=example))
        if w.shape != shape:
            raise MismatchError(f"the weights have shape {w.shape}, expected {shape}", example)
        fan_in = int(np.prod(shape[1:]))
        want = 2.0 / ((1.0 + slope**2) * fan_in)
        # Over >= 131,072 draws the sample variance is within 0.4% (one standard deviation) of the
        # true one: 5% is 12 standard deviations, and the seeds are fixed.
        got = float(np.mean(w.astype(np.float64) ** 2))
        if not 0.95 < got / want < 1.05:
            raise MismatchError(f"the weights' variance is {got:.4g}, the argument gives {want:.4g} "
                                f"({got / want:.3g} times)", example,
                                (f"fan_in = {fan_in} (inputs per output: C_in * k * k)",))

    for_examples(init_cases, body)


def _check_init_depth(mod: ModuleType) -> None:
    def body(case):
        _, slope, seed = case
        rng, width, depth = np.random.default_rng(seed), 256, 30
        example = f"{depth} layers of width {width}, LeakyReLU({slope}), inputs of unit variance"
        x = np.random.default_rng(100 + seed).standard_normal((64, width))
        ratios = []
        y = x
        for layer in range(depth):
            w = np.asarray(call(mod.kaiming_normal, (width, width), slope, rng, np.float64, example=example))
            y = np.where(y > 0, y, slope * y) @ w.T if layer else y @ w.T
            ratios.append(float(np.mean(y**2)))
        growth = ratios[-1] / ratios[0]
        # Exact Kaiming weights keep it near 1, but a product of 30 random layers of width 256
        # wanders: its log has a standard deviation of about 0.5, and one drawn case gave 0.234.
        # Half or double the variance per layer gives 2^+-29, the ReLU gain at slope 0.5 1.25^30 =
        # 800: [1/8, 8] separates them with room to spare.
        if not 0.125 < growth < 8:
            raise MismatchError(f"the pre-activations' mean square changes {growth:.3g} times over {depth} "
                                "layers", example,
                                    ("the variance of each layer's output must equal its input's",))

    for_examples(st.tuples(st.just(None), SLOPES, SEEDS), body, max_examples=6)


def _check_init_draws(mod: ModuleType) -> None:
    def body(case):
        shape, slope, seed = case
        example = f"shape {shape}, negative_slope {slope}, rng np.random.default_rng({seed}) twice"
        draw = lambda s: np.asarray(call(mod.kaiming_normal, shape, slope,  # noqa: E731
                                         np.random.default_rng(s), np.float64, example=example))
        first, again = draw(seed), draw(seed)
        if first.shape != shape:
            return  # the variance's property reports it
        if not np.array_equal(first, again):
            raise MismatchError("the same generator gave different weights", example,
                                ("draw every number from rng: the caller seeds it to reproduce a run",),
                                hint="draw from the generator you are given (rng.standard_normal), not from "
                                "np.random's global state")
        z = first.ravel() / np.sqrt(np.mean(first**2))
        kurtosis = float(np.mean(z**4))  # 3 for a normal; 1.8 for a uniform; within 0.05 over 131,072 draws
        if not 2.7 < kurtosis < 3.3:
            raise MismatchError(f"the weights' kurtosis E[w^4] / E[w^2]^2 is {kurtosis:.3g}; a normal "
                                "distribution's is 3", example,
                                hint="kaiming_normal draws from a normal distribution (rng.standard_normal); "
                                "a uniform one of the same variance is kaiming_uniform")

    for_examples(init_cases, body, max_examples=6)


def _invoke_init(mod: ModuleType, case):
    (shape, slope, seed), dtype = case
    fn = lambda shape: mod.kaiming_normal(shape, slope, np.random.default_rng(seed), dtype)  # noqa: E731
    return fn, (shape,), f"shape {shape}, negative_slope {slope}, dtype {np.dtype(dtype)}", dtype


EX19 = Exercise(
    "ex19", "10", "Kaiming's initialisation, derived", "ex19_kaiming_init.py",
    (
        Property("the weights' variance is 2 / ((1 + a^2) fan_in), fan_in = C_in * k * k for a conv",
                 _check_init_variance,
                 "fan_in counts every input of one output: C_in * k * k for a (C_out, C_in, k, k) kernel",
                 key="variance"),
        Property("30 layers keep the pre-activations' variance (within a factor of 8)", _check_init_depth,
                 "E[leaky(y)^2] = (1 + a^2) / 2 Var(y) for symmetric y: the variance that keeps the scale is "
                 "2 / ((1 + a^2) fan_in)", key="depth"),
        Property("normal draws, all from the generator passed in (the same seed, the same weights)",
                 _check_init_draws, "draw from rng itself with rng.standard_normal", key="draws"),
        keeps_dtype(st.tuples(init_cases, DTYPES), _invoke_init, named_outputs("the weights")),
    ),
    causes=(
        cause("variance", "depth", text="the gain is wrong: half of a symmetric y is scaled by a, so "
              "E[leaky(y)^2] = (1 + a^2) / 2 Var(y), and the weights need variance 2 / ((1 + a^2) fan_in)"),
        cause("variance", text="the gain is right but fan_in is not: a conv's output reads C_in * k * k "
              "inputs, not C_in"),
    ),
)

# ---- ex20: a residual block's Jacobian ---------------------------------------------------------------

jacobian_cases = st.tuples(st.sampled_from(["BasicBlock", "PreActBlock"]), st.integers(1, 2), SEEDS)
JACOBIAN_EXAMPLES = 4


def _jacobian_case(case, dtype=np.float64, mode="train"):
    kind, n, seed = case
    tr.manual_seed(seed)
    block = getattr(library, kind)(2, 2)
    block = (block.float() if dtype == np.float32 else block.double())
    getattr(block, mode)()
    x = Tensor(np.random.default_rng(seed).standard_normal((n, 2, 3, 3)).astype(dtype), requires_grad=True)
    return block, x, f"{kind}(2, 2) in {mode} mode, x ({n}, 2, 3, 3) {np.dtype(dtype)}"


def _jacobian_truth(block, x) -> np.ndarray:
    rows, out = [], block(x)
    for k in range(out.numel()):
        seed = np.zeros(out.shape, dtype=out.dtype)
        seed.flat[k] = 1.0
        (dx,) = tr.autograd.grad(block(x), x, grad_outputs=Tensor(seed))
        rows.append(dx.numpy().ravel())
    return np.array(rows)


def _check_jacobian(mod: ModuleType) -> None:
    def body(case):
        block, x, example = _jacobian_case(case)
        want = _jacobian_truth(block, x)
        got = call(mod.block_jacobian, block, x, example=example)
        if not block.training:
            raise MismatchError("your code switched the block to eval mode", example,
                                hint="measure the block as it is given: in training mode batch norm uses the "
                                "batch's statistics, which couple the images; leave its mode alone")
        try:
            compare("J", want, got, example, rtol=1e-9, atol=1e-12)
        except MismatchError as m:
            if np.shape(got) == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-6):  # close only
                raise MismatchError(m.what + " (close, not exact)", m.example, m.details,
                                    hint="J is close but not exact: finite differences are accurate to about "
                                    "1e-7 at best; one autograd.grad per output element gives it "
                                    "exactly") from None
            raise

    for_examples(jacobian_cases, body, max_examples=JACOBIAN_EXAMPLES)


def _invoke_jacobian(mod: ModuleType, case):
    case, dtype = case
    block, x, example = _jacobian_case(case, dtype, mode="eval")
    for t in (x, *block.parameters()):  # a .grad from an earlier step, which must survive
        t.grad = Tensor(np.ones(t.shape, dtype=dtype))
    return mod.block_jacobian, (block, x), example + "; x and every parameter have a .grad", dtype


EX20 = Exercise(
    "ex20", "07", "a residual block's Jacobian, no .grad changed", "ex20_block_jacobian.py",
    (
        Property("J equals the block's Jacobian (train mode, a batch: batch norm couples the images)",
                 _check_jacobian,
                 "row k is the gradient of out.flat[k] with respect to x: one backward (or autograd.grad) "
                 "per output element, J[k, j] = d out_k / d x_j (not its transpose)", key="values"),
        keeps_dtype(st.tuples(jacobian_cases, DTYPES), _invoke_jacobian, named_outputs("J"),
                                                                                       JACOBIAN_EXAMPLES),
        inputs_unchanged(st.tuples(jacobian_cases, DTYPES), _invoke_jacobian, "block, x", JACOBIAN_EXAMPLES),
    ),
    causes=(
        cause("inputs", text="backward adds into .grad of x and of every parameter: measure with "
              "tinyres.autograd.grad(out, x, grad_outputs=seed), which returns the gradient and "
              "touches no .grad"),
    ),
)

EXERCISES = (EX12, EX13, EX14, EX15, EX16, EX07, EX19, EX20)
