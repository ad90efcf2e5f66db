"""Optimizers and schedulers: every step as PyTorch's, state dicts that resume exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyres as tr
from tinyres.optim import SGD, Adam
from tinyres.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR

SGD_SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-3),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
]
ADAM_SETTINGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
    dict(lr=1e-2, amsgrad=True),
]


def gradient_sequence(shapes, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]


def run_tinyres(make_opt, inits, grads, start=0, opt_state=None):
    params = [tr.tensor(a, requires_grad=True) for a in inits]
    opt = make_opt(params)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    for step_grads in grads[start:]:
        opt.zero_grad()
        for p, g in zip(params, step_grads):
            p.grad = tr.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params], opt


def run_torch(torch, make_opt, inits, grads):
    params = [torch.tensor(a, requires_grad=True) for a in inits]
    opt = make_opt(params)
    for step_grads in grads:
        opt.zero_grad()
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


SHAPES = [(3, 4), (5,)]


def inits(seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


# ---- against PyTorch ------------------------------------------------------------------


OPTIMIZER_CASES = [("SGD", s) for s in SGD_SETTINGS] + [("Adam", s) for s in ADAM_SETTINGS]


@pytest.mark.torch
@pytest.mark.parametrize("name, settings", OPTIMIZER_CASES, ids=str)
def test_optimizer_matches_torch_over_several_steps(name, settings):
    torch = pytest.importorskip("torch")
    grads = gradient_sequence(SHAPES, 6)
    ours, _ = run_tinyres(lambda ps: getattr(tr.optim, name)(ps, **settings), inits(), grads)
    theirs = run_torch(torch, lambda ps: getattr(torch.optim, name)(ps, **settings), inits(), grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def scheduler_lrs(lib, make_sched, epochs, lr=0.1):
    """The learning rate of every epoch, stepping the optimizer then the scheduler."""
    opt = lib.optim.SGD([lib.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)
    sched = make_sched(lib, opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]
        opt.step()
        sched.step()
    return lrs


SCHEDULES = {
    "multistep": lambda lib, opt: lib.optim.lr_scheduler.MultiStepLR(opt, [3, 5, 5, 8], gamma=0.2),
    "cosine": lambda lib, opt: lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7),
    "cosine_eta_min": lambda lib, opt: lib.optim.lr_scheduler.CosineAnnealingLR(opt, 5, eta_min=0.01),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedulers_match_torch(name):
    torch = pytest.importorskip("torch")
    # 20 epochs runs cosine schedules past T_max, through the restart branch.
    ours = scheduler_lrs(tr, SCHEDULES[name], 20)
    theirs = scheduler_lrs(torch, SCHEDULES[name], 20)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


# ---- hand-derived values (no PyTorch needed) -------------------------------------------


def test_sgd_hand_derived_momentum_nesterov_and_weight_decay():
    # p0 = 1, constant gradient g = 2, lr 0.1, momentum 0.5, weight decay 0.1.
    # step 1: d = 2 + 0.1*1 = 2.1;  b = 2.1;  nesterov d = 2.1 + 0.5*2.1 = 3.15;  p = 0.685
    # step 2: d = 2 + 0.1*0.685 = 2.0685;  b = 0.5*2.1 + 2.0685 = 3.1185
    #         nesterov d = 2.0685 + 0.5*3.1185 = 3.62775;  p = 0.685 - 0.362775 = 0.322225
    w = tr.tensor([1.0], dtype=np.float64, requires_grad=True)
    opt = SGD([w], lr=0.1, momentum=0.5, weight_decay=0.1, nesterov=True)
    expected = [0.685, 0.322225]
    for want in expected:
        w.grad = tr.tensor([2.0], dtype=np.float64)
        opt.step()
        assert w.item() == pytest.approx(want, abs=1e-12)


def test_adam_hand_derived_first_two_steps():
    # Gradients 1 then 3; beta1 0.5, beta2 0.75, lr 1, eps 0.
    # t=1: m = 0.5, v = 0.25; m̂ = 1, v̂ = 1 -> step 1; p = -1
    # t=2: m = 0.25 + 1.5 = 1.75, v = 0.1875 + 2.25 = 2.4375
    #      m̂ = 1.75/0.75, v̂ = 2.4375/0.4375 -> step = (7/3)/sqrt(39/7)
    w = tr.tensor([0.0], dtype=np.float64, requires_grad=True)
    opt = Adam([w], lr=1.0, betas=(0.5, 0.75), eps=0.0)
    w.grad = tr.tensor([1.0], dtype=np.float64)
    opt.step()
    assert w.item() == pytest.approx(-1.0, abs=1e-12)
    w.grad = tr.tensor([3.0], dtype=np.float64)
    opt.step()
    assert w.item() == pytest.approx(-1.0 - (7 / 3) / math.sqrt(39 / 7), abs=1e-12)


def test_adam_hand_derived_eps_sits_outside_the_square_root():
    # Gradients 1 then 3; beta1 0.5, beta2 0.75, lr 1, eps 1 (large, so its place shows):
    # t=1: m̂ = 1, v̂ = 1 -> step 1 / (sqrt(1) + 1) = 0.5  (inside the root: 1/sqrt(2))
    # t=2: m̂ = 7/3, v̂ = 39/7 -> step (7/3) / (sqrt(39/7) + 1)
    w = tr.tensor([0.0], dtype=np.float64, requires_grad=True)
    opt = Adam([w], lr=1.0, betas=(0.5, 0.75), eps=1.0)
    w.grad = tr.tensor([1.0], dtype=np.float64)
    opt.step()
    assert w.item() == pytest.approx(-0.5, abs=1e-12)
    w.grad = tr.tensor([3.0], dtype=np.float64)
    opt.step()
    assert w.item() == pytest.approx(-0.5 - (7 / 3) / (math.sqrt(39 / 7) + 1), abs=1e-12)


def test_adam_hand_derived_weight_decay_joins_the_gradient():
    # p0 = 1, gradient 1, weight decay 1 -> g = 1 + 1*1 = 2; beta1 0.5, beta2 0.75, lr 1, eps 1.
    # t=1: m̂ = 2, v̂ = 4 -> step 2 / (2 + 1) = 2/3; p = 1/3   (without the decay: step 1/2)
    # t=2: g = 1 + 1/3 = 4/3; m = 0.5*1 + 0.5*4/3 = 7/6, v = 0.75*1 + 0.25*16/9 = 43/36
    #      m̂ = (7/6)/0.75 = 14/9, v̂ = (43/36)/0.4375 -> step (14/9) / (sqrt(v̂) + 1)
    w = tr.tensor([1.0], dtype=np.float64, requires_grad=True)
    opt = Adam([w], lr=1.0, betas=(0.5, 0.75), eps=1.0, weight_decay=1.0)
    w.grad = tr.tensor([1.0], dtype=np.float64)
    opt.step()
    assert w.item() == pytest.approx(1 / 3, abs=1e-12)
    w.grad = tr.tensor([1.0], dtype=np.float64)
    opt.step()
    v_hat = (43 / 36) / 0.4375
    assert w.item() == pytest.approx(1 / 3 - (14 / 9) / (math.sqrt(v_hat) + 1), abs=1e-12)


def test_sgd_hand_derived_dampening():
    # p0 = 0, gradients 2 then 4, lr 1, momentum 0.5, dampening 0.5.
    # step 1: b = g = 2 (no dampening on the first step, as in PyTorch); p = -2
    # step 2: b = 0.5*2 + (1 - 0.5)*4 = 3; p = -5   (ignoring dampening: b = 5, p = -7)
    w = tr.tensor([0.0], dtype=np.float64, requires_grad=True)
    opt = SGD([w], lr=1.0, momentum=0.5, dampening=0.5)
    for g, want in ((2.0, -2.0), (4.0, -5.0)):
        w.grad = tr.tensor([g], dtype=np.float64)
        opt.step()
        assert w.item() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_continues_past_t_max_as_the_closed_form(eta_min):
    # PyTorch's recursive form equals the closed form at every epoch, also past T_max, where
    # the cosine climbs back up: epoch 7 is the bottom, epoch 14 the base rate again.
    lrs = scheduler_lrs(tr, lambda lib, opt: CosineAnnealingLR(opt, T_max=7, eta_min=eta_min), 20)
    closed = [eta_min + (0.1 - eta_min) * (1 + math.cos(math.pi * t / 7)) / 2 for t in range(20)]
    assert lrs == pytest.approx(closed, abs=1e-12)
    assert lrs[7] == pytest.approx(eta_min, abs=1e-12) and lrs[14] == pytest.approx(0.1, abs=1e-12)


def test_cosine_step_keeps_a_rate_changed_by_hand():
    # PyTorch's step() scales the current rate, so a change made by hand persists:
    # T_max 4, base 1. Epoch 1: (1 + cos(pi/4)) / 2. Set the rate to 0.5 by hand; epoch 2
    # multiplies it by (1 + cos(pi/2)) / (1 + cos(pi/4)) (the closed form would say 0.5).
    opt = SGD([tr.zeros(1, requires_grad=True)], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=4)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx((1 + math.cos(math.pi / 4)) / 2, abs=1e-12)
    opt.param_groups[0]["lr"] = 0.5
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 / (1 + math.cos(math.pi / 4)), abs=1e-12)


def test_defaults_are_pytorchs():
    # The documented defaults of torch.optim.SGD and torch.optim.Adam, written out.
    w = tr.zeros(1, requires_grad=True)
    assert {k: v for k, v in SGD([w]).param_groups[0].items() if k != "params"} == dict(
        lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
    assert {k: v for k, v in Adam([w]).param_groups[0].items() if k != "params"} == dict(
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_reaches_past_a_parameter_without_gradient(set_to_none):
    unused, used = tr.zeros(2, requires_grad=True), tr.zeros(2, requires_grad=True)
    used.grad = tr.ones(2)
    SGD([unused, used], lr=0.1).zero_grad(set_to_none=set_to_none)
    assert unused.grad is None
    assert used.grad is None if set_to_none else used.grad.numpy().tolist() == [0.0, 0.0]


def test_amsgrad_keeps_the_largest_second_moment():
    # A large gradient then small ones: with amsgrad the denominator never shrinks,
    # so the later steps are smaller than plain Adam's.
    moves = {}
    for amsgrad in (False, True):
        w = tr.tensor([0.0], dtype=np.float64, requires_grad=True)
        opt = Adam([w], lr=1.0, betas=(0.0, 0.5), eps=0.0, amsgrad=amsgrad)
        for g in (10.0, 1.0):
            before = w.item()
            w.grad = tr.tensor([g], dtype=np.float64)
            opt.step()
        moves[amsgrad] = before - w.item()
    # plain: v = 0.5*50 + 0.5 = 25.5, v̂ = 25.5/0.75 = 34 -> step 1/sqrt(34)
    # amsgrad: v_max = max(50, 25.5) = 50 -> v̂ = 50/0.75 -> step 1/sqrt(200/3)
    assert moves[False] == pytest.approx(1 / math.sqrt(34))
    assert moves[True] == pytest.approx(1 / math.sqrt(200 / 3))


def test_multistep_and_cosine_closed_forms():
    lrs = scheduler_lrs(tr, SCHEDULES["multistep"], 10)
    assert lrs == pytest.approx([0.1] * 3 + [0.02] * 2 + [0.1 * 0.2**3] * 3 + [0.1 * 0.2**4] * 2)
    lrs = scheduler_lrs(tr, SCHEDULES["cosine"], 8)
    closed = [0.05 * (1 + math.cos(math.pi * t / 7)) for t in range(8)]
    assert lrs == pytest.approx(closed, abs=1e-12)


def test_scheduler_step_with_epoch_uses_closed_form():
    opt = SGD([tr.zeros(1, requires_grad=True)], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    sched.step(5)
    assert sched.get_last_lr() == pytest.approx([0.55])


def test_groups_have_their_own_settings():
    a = tr.ones(2, requires_grad=True)
    b = tr.ones(2, requires_grad=True)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    sched = MultiStepLR(opt, milestones=[1], gamma=0.5)
    for p in (a, b):
        p.grad = tr.ones(2)
    opt.step()
    np.testing.assert_allclose(a.detach().numpy(), 0.9)
    np.testing.assert_allclose(b.detach().numpy(), 0.0)
    sched.step()
    assert sched.get_last_lr() == [0.05, 0.5]


def test_zero_grad_to_none_or_zeros_and_no_graph_recorded():
    w = tr.ones(2, requires_grad=True)
    opt = SGD([w], lr=0.1)
    (w * 3.0).sum().backward()
    opt.step()
    assert w.is_leaf and w.grad_fn is None
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad.numpy(), [0.0, 0.0])
    opt.zero_grad()
    assert w.grad is None


def test_parameters_without_gradient_are_left_alone():
    a = tr.ones(2, requires_grad=True)
    b = tr.ones(2, requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    a.grad = tr.ones(2)
    opt.step()
    np.testing.assert_array_equal(b.detach().numpy(), [1.0, 1.0])
    assert b not in opt.state


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ps: SGD(ps, lr=-1.0), "invalid lr"),
        (lambda ps: Adam(ps, eps=-1.0), "invalid eps"),
        (lambda ps: SGD(ps, lr=0.1, nesterov=True), "Nesterov"),
        (lambda ps: Adam(ps, betas=(0.9, 1.0)), "beta"),
        (lambda ps: SGD([], lr=0.1), "empty"),
        (lambda ps: SGD([{"params": ps, "lr": 0.1, "momentun": 0.9}], lr=0.1), "momentun"),
        (lambda ps: SGD(ps + ps, lr=0.1), "more than one"),
        (lambda ps: SGD([ps[0] * 2.0], lr=0.1), "non-leaf"),
    ],
)
def test_bad_settings_get_clear_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make([tr.ones(2, requires_grad=True)])


# ---- resuming --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_opt",
    [lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True), lambda ps: Adam(ps, lr=0.01, amsgrad=True)],
    ids=["sgd", "adam"],
)
def test_state_dict_resumes_to_the_same_parameters(make_opt):
    grads = gradient_sequence(SHAPES, 6)
    straight, _ = run_tinyres(make_opt, inits(), grads)
    halfway, opt = run_tinyres(make_opt, inits(), grads[:3])
    state = opt.state_dict()
    resumed, _ = run_tinyres(make_opt, halfway, grads, start=3, opt_state=state)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_state_dict_is_a_copy_and_checks_shapes():
    w = tr.ones(2, requires_grad=True)
    opt = SGD([w], lr=0.1, momentum=0.9)
    w.grad = tr.ones(2)
    opt.step()
    state = opt.state_dict()
    assert state["param_groups"][0]["params"] == [0]
    opt.step()
    np.testing.assert_array_equal(state["state"][0]["momentum_buffer"], [1.0, 1.0])
    other = SGD([tr.ones(3, requires_grad=True)], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(state)


def test_scheduler_state_dict_resumes():
    def make():
        opt = SGD([tr.zeros(1, requires_grad=True)], lr=1.0)
        return opt, CosineAnnealingLR(opt, T_max=6)

    opt, sched = make()
    for _ in range(3):
        sched.step()
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    for _ in range(2):
        sched.step()
    opt2, sched2 = make()
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    for _ in range(2):
        sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
