"""The PyTorch side of micrograd's test_engine.py: scalar expressions built from
``torch.Tensor([...]).double()`` leaves, with ``.data.item()`` and ``.grad.item()``."""

import torch


def test_sanity_check():

    x = torch.Tensor([-4.0]).double()
    x.requires_grad = True
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xpt, ypt = x, y
    return ypt.data.item(), xpt.grad.item()


def test_more_ops():

    a = torch.Tensor([-4.0]).double()
    b = torch.Tensor([2.0]).double()
    a.requires_grad = True
    b.requires_grad = True
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    apt, bpt, gpt = a, b, g
    return gpt.data.item(), apt.grad.item(), bpt.grad.item()
