"""The lessons' measured claims, re-measured on every run: tiny nets, few steps, seconds.

Lessons 11 and 12 quote numbers from ``lessons/figures/*.json``, written by the full
``demo degradation`` and ``demo lesion`` runs (minutes to hours). A code change cannot
alter those files, so the lessons' asserts on them cannot catch a regression. Each test
here measures the same effect afresh on a small problem: 4x4 one-channel images whose
label (4 classes, chance 0.25) is the quadrant holding a bright blob (``toy_data``).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import toy_data

import tinyres as tr
from tinyres.data import DataLoader
from tinyres.demos.degradation import Run
from tinyres.demos.lesion import lesion_accuracies
from tinyres.models import CifarResNet
from tinyres.nn import CrossEntropyLoss
from tinyres.training import fit

TRAIN, TEST = toy_data(128, 0, size=4), toy_data(64, 1, size=4)


def trained(run: Run, epochs: int = 2, seed: int = 0) -> tuple[CifarResNet, list[dict]]:
    """``run`` trained with the paper's SGD settings (lr 0.1, no schedule) on ``TRAIN``."""
    tr.manual_seed(seed)
    model = run.build(1, 4)
    optimizer = tr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    history = fit(model, DataLoader(TRAIN, 32, shuffle=True, generator=seed), DataLoader(TEST, 64), optimizer,
                  epochs=epochs, progress=False)
    return model, history


def grad_first_over_last(run: Run, seed: int = 0) -> float:
    """|dL/dw| of the stem convolution over that of the last convolution, at initialisation."""
    tr.manual_seed(seed)
    model = run.build(1, 4)
    images, labels = next(iter(DataLoader(TRAIN, 32)))
    CrossEntropyLoss()(model(images), labels).backward()
    convs = [p for name, p in model.named_parameters() if name.endswith("weight") and p.ndim == 4]
    return float(np.linalg.norm(convs[0].grad.numpy()) / np.linalg.norm(convs[-1].grad.numpy()))


def test_lesson_11_degradation_the_deeper_plain_net_trains_worse():
    # Lesson 11, section 2: the deeper plain net is worse on its *training* data, and the
    # shortcuts remove most of the gap. Measured (2 epochs of 4 steps): training loss
    # plain-8 0.10, plain-32 1.09, resnet-32 0.19.
    runs = (Run(8, False), Run(32, False), Run(32, True))
    loss = {run.name: trained(run)[1][-1]["train_loss"] for run in runs}
    assert loss["plain-32"] > loss["plain-8"] + 0.5, loss
    assert loss["resnet-32"] < loss["plain-32"] / 2, loss


def test_lesson_11_the_bn_plain_nets_gradient_explodes_towards_the_input():
    # Lesson 11, section 3: with BN, a deep plain net's stem receives far more gradient than
    # its last convolution (the "vanishing" story is wrong for it); a residual net's ratio
    # stays near 1. Measured at initialisation on one batch: plain-56 about 2,000;
    # resnet-56 about 8; plain-8 about 3.
    ratio = {run.name: grad_first_over_last(run) for run in (Run(8, False), Run(56, False), Run(56, True))}
    assert ratio["plain-56"] > 100, ratio
    assert ratio["plain-56"] > 20 * ratio["resnet-56"], ratio
    assert ratio["plain-56"] > 20 * ratio["plain-8"], ratio


@pytest.fixture(scope="module")
def lesions() -> dict[str, tuple[float, list[float]]]:
    """Test accuracy of plain-14 and resnet-14, intact and with each deletable block removed."""
    out = {}
    for run in (Run(14, False), Run(14, True)):
        model, history = trained(run, epochs=3)
        singles = [r["test_acc"] for r in lesion_accuracies(model, TEST) if r["test_acc"] is not None]
        out[run.name] = history[-1]["test_acc"], singles
    return out


def test_lesson_12_deleting_one_block_barely_hurts_a_resnet(lesions):
    # Lesson 12: a ResNet behaves like an ensemble of paths; removing one block removes only
    # half of them, so test accuracy barely moves. Measured: intact 1.0, every deletion >= 0.98.
    intact, singles = lesions["resnet-14"]
    assert intact > 0.9 and len(singles) == 4, lesions
    assert np.mean(singles) > intact - 0.1, lesions


def test_lesson_12_deleting_one_block_breaks_a_plain_net(lesions):
    # Lesson 12: a plain net is one path; removing any block breaks it. Measured: intact 0.75,
    # deletions average 0.16 (chance is 0.25).
    intact, singles = lesions["plain-14"]
    assert intact > 0.6 and len(singles) == 4, lesions
    assert np.mean(singles) < min(0.5, intact - 0.3), lesions
