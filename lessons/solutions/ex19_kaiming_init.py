r"""Exercise 19 (lesson 10): Kaiming's variance argument, as code.

Lesson 10 uses ``init="kaiming"``; here you derive it. A layer y = W x with independent,
zero-mean weights of variance v and inputs x_j = f(y'_j) of the previous pre-activations:

- Var(y_i) = fan_in * v * E[x_j^2] (fan_in = inputs per output: C_in * k * k for a conv);
- for f = LeakyReLU with negative slope a and y' symmetric about 0, work out E[x_j^2] as
  a multiple of Var(y'_j);

then choose v so that Var(y) = Var(y'): the pre-activations keep their variance through
any depth. Return normal weights of that variance for ``shape`` ((out, in) for a linear
layer, (C_out, C_in, k, k) for a conv), drawn from ``rng``, in ``dtype``.

Check your work: ``tinyres check ex19``.
"""

from __future__ import annotations

import numpy as np


def kaiming_normal(shape: tuple[int, ...], negative_slope: float, rng: np.random.Generator,
                   dtype: type = np.float32) -> np.ndarray:
    """Weights of ``shape`` with variance 2 / ((1 + a^2) fan_in), a = ``negative_slope``."""
    fan_in = int(np.prod(shape[1:]))
    # E[leaky(y)^2] = (1 + a^2) / 2 * Var(y) for symmetric y: half the mass keeps y^2, half gets a^2 y^2.
    std = np.sqrt(2.0 / ((1.0 + negative_slope**2) * fan_in))
    return (std * rng.standard_normal(shape)).astype(dtype)
