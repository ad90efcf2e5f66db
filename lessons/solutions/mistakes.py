"""The planted mistakes: for every exercise, wrong solutions that the grader must fail.

Each mistake is a patch of its exercise's reference solution in this folder: pairs of
(old text, new text), applied in order when grading. Each old text must occur exactly once
in the solution (as patched so far), or the grader refuses with the text it did not find:
edit a solution, and the mistakes planted in it either follow or say what to update.
``fails`` holds words of the property the mistake must fail; the patched line says
``# MISTAKE``. ``tinyres check --solutions`` grades every solution and every mistake;
``tests/test_grading.py`` checks that each mistake fails on the property it names.
"""

from tinyres.grading.mistakes import Mistake

MISTAKES = (
    Mistake(
        "ex01", "preorder",
        effect="The order is a depth-first pre-order: a tensor used twice can be reached before its "
        "second consumer, and passes on an incomplete gradient.",
        fails="every node before its parents",
        cause="post-order",
        replace=(
            ("stack.append((node, True))",
             "order.append(node)  # MISTAKE: pre-order; a reused tensor may precede one of its consumers"),
            ("return order[::-1]  # post-order puts parents first; reversed, every node precedes its parents",
             "return order"),
        ),
    ),
    Mistake(
        "ex01", "recursive",
        effect="A correct order, built by a recursive function: a deep graph exceeds Python's "
        "recursion limit.",
        fails="10,000 ops",
        replace=((
            "    stack: list[tuple[Node, bool]] = [(root if root.grad_fn is None else root.grad_fn, False)]\n"
            "    while stack:\n"
            "        node, inputs_done = stack.pop()\n"
            "        if inputs_done:  # every parent is already in ``order``: post-order\n"
            "            order.append(node)\n"
            "            continue\n"
            "        if id(node) in seen:\n"
            "            continue\n"
            "        seen.add(id(node))\n"
            "        stack.append((node, True))\n"
            "        if isinstance(node, Function):\n"
            "            for parent in node.parents:\n"
            "                if parent is not None and id(parent) not in seen:\n"
            "                    stack.append((parent, False))\n",
            "\n"
            "    def visit(node: Node) -> None:  # MISTAKE: recursion, one call per op in the chain\n"
            "        if id(node) in seen:\n"
            "            return\n"
            "        seen.add(id(node))\n"
            "        if isinstance(node, Function):\n"
            "            for parent in node.parents:\n"
            "                if parent is not None:\n"
            "                    visit(parent)\n"
            "        order.append(node)\n"
            "\n"
            "    visit(root if root.grad_fn is None else root.grad_fn)\n",
        ),),
    ),
    Mistake(
        "ex01", "grad_overwritten",
        effect="Each backward sets .grad instead of adding to it: a second backward call, or a leaf "
        "that already has a gradient, loses what was there (PyTorch accumulates).",
        fails=".grad accumulates",
        cause="PyTorch adds into .grad",
        replace=(("node.grad = Tensor(grad.copy()) if node.grad is None"
                  " else Tensor(node.grad.numpy() + grad)",
                  "node.grad = Tensor(grad.copy())  # MISTAKE: overwrites the gradient the leaf had"),),
    ),
    Mistake(
        "ex01", "keyed_by_tensor",
        effect="The walk follows grad_fn.inputs and keys gradients by tensor: after `out = x * 3; "
        "out += x` the Tensor out stands for two nodes, and x.grad is [1, 1] where the engine gives [4, 4].",
        fails="by op",
        cause="keyed by tensor",
        replace=(
            ("    stack: list[tuple[Node, bool]] = [(root if root.grad_fn is None else root.grad_fn, False)]",
             "    stack: list[tuple[Node, bool]] = [(root, False)]  # MISTAKE: tensors, not ops"),
            ("        if isinstance(node, Function):\n"
             "            for parent in node.parents:\n"
             "                if parent is not None and id(parent) not in seen:\n"
             "                    stack.append((parent, False))",
             "        if node.grad_fn is not None:\n"
             "            for parent in node.grad_fn.inputs:\n"
             "                if isinstance(parent, Tensor) and parent.requires_grad"
             " and id(parent) not in seen:\n"
             "                    stack.append((parent, False))"),
            ("        if isinstance(node, Tensor):  # a leaf: accumulate into what it already has",
             "        if node.grad_fn is None:  # a leaf: accumulate into what it already has"),
            ("        for parent, inp, g in zip(node.parents, node.inputs, node.backward(grad)):\n"
             "            if parent is None or g is None:",
             "        for inp, g in zip(node.grad_fn.inputs, node.grad_fn.backward(grad)):\n"
             "            parent = inp\n"
             "            if not isinstance(inp, Tensor) or not inp.requires_grad or g is None:"),
        ),
    ),
    Mistake(
        "ex01", "float64_seed",
        effect="The seed gradient is np.ones(root.shape), float64, and nothing casts it back: a float32 "
        "graph gets float64 gradients, which a float32 leaf's .grad refuses (as PyTorch's does).",
        fails="float32 results as accurate",
        cause="the seed gradient",
        replace=(
            ("    grads = {id(order[0]): np.ones(root.shape, dtype=root.dtype)}",
             "    grads = {id(order[0]): np.ones(root.shape)}  # MISTAKE: float64 whatever root is"),
            ("g = unbroadcast(np.asarray(g, dtype=inp.dtype), inp.shape)",
             "g = unbroadcast(np.asarray(g), inp.shape)"),
        ),
    ),
    Mistake(
        "ex02", "input_not_output",
        effect="The backward squares the input instead of the output: 1 - x^2.",
        fails="central differences",
        replace=(
            ("self.z = np.tanh(x)", "self.x, self.z = x, np.tanh(x)"),
            ("(1 - self.z * self.z),)", "(1 - self.x * self.x),)  # MISTAKE: x, not z = tanh(x)"),
        ),
    ),
    Mistake(
        "ex03", "leading_axes_only",
        effect="Only the leading axes are summed; an input of shape (2, 1) gets a (2, 3) gradient.",
        fails="the input's shape",
        replace=((
            "    ones = tuple(i for i, n in enumerate(shape) if n == 1)\n"
            "    return grad.sum(axis=ones, keepdims=True)",
            "    return grad  # MISTAKE: the axes where the input had size 1 are not summed",
        ),),
    ),
    Mistake(
        "ex03", "mean",
        effect="Averages over the copies instead of summing: the right shape, the values too small.",
        fails="sum of the gradient over its broadcast copies",
        replace=(
            ("grad = grad.sum(axis=tuple(range(extra)))",
             "grad = grad.mean(axis=tuple(range(extra)))  # MISTAKE: mean instead of sum"),
            ("return grad.sum(axis=ones, keepdims=True)", "return grad.mean(axis=ones, keepdims=True)"),
        ),
    ),
    Mistake(
        "ex04", "missing_transpose",
        effect="dL/dX = G @ Y without the transpose: wrong shape unless Y is square, wrong values if it is.",
        fails="each gradient has its input's shape",
        replace=(("return grad @ self.y.T, self.x.T @ grad",
                  "return grad @ self.y, self.x.T @ grad  # MISTAKE: Y, not Y.T"),),
    ),
    Mistake(
        "ex04", "half_precision",
        effect="float32 input is multiplied in float16 (as mixed-precision training does on a GPU) and cast "
        "back: float64 and the dtype are right, but a float32 product keeps only about 3 digits.",
        fails="float32 results as accurate",
        cause="float16",
        replace=(("        return x @ y",
                  "        if x.dtype == np.float32:  # MISTAKE: half precision, cast back to float32\n"
                  "            return (x.astype(np.float16) @ y.astype(np.float16)).astype(np.float32)\n"
                  "        return x @ y"),),
    ),
    Mistake(
        "ex05", "one_sided",
        effect="A one-sided (forward) difference: right to about 1e-6 with eps = 1e-6, but its error "
        "shrinks only like eps, not eps^2.",
        fails="order eps^2",
        replace=((
            "        x[j] = original - eps\n"
            "        minus = np.sum(upstream * f(x))\n"
            "        x[j] = original\n"
            "        grad[j] = (plus - minus) / (2 * eps)",
            "        x[j] = original\n"
            "        here = np.sum(upstream * f(x))\n"
            "        grad[j] = (plus - here) / eps  # MISTAKE: one-sided, accurate only to order eps",
        ),),
    ),
    Mistake(
        "ex06", "overflow",
        effect="Softmax without subtracting the maximum: exp(1e4) overflows to inf.",
        fails="logits of 1e4",
        replace=(("shifted = logits - logits.max(axis=1, keepdims=True)",
                  "shifted = logits  # MISTAKE: no max subtracted, exp overflows for large logits"),),
    ),
    Mistake(
        "ex06", "batch_max",
        effect="One maximum for the whole batch instead of each row's: a row 1e3 below the batch's "
        "largest logit has every exponential underflow to 0, and its loss is inf.",
        fails="rows lie far apart",
        cause="one maximum for the whole batch",
        replace=(("shifted = logits - logits.max(axis=1, keepdims=True)",
                  "shifted = logits - logits.max()  # MISTAKE: one maximum for the whole batch"),),
    ),
    Mistake(
        "ex06", "log_of_softmax",
        effect="The loss is the log of the softmax probability: for a confidently wrong class the "
        "probability underflows to 0 and the loss is inf (log-softmax would give a finite 800).",
        fails="confidently wrong class",
        cause="the log of an underflowed probability",
        replace=(("    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))",
                  "    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)\n"
                  "    log_p = np.log(p)  # MISTAKE: the log of a probability that can underflow to 0"),),
    ),
    Mistake(
        "ex06", "sum_gradient",
        effect="The loss is the mean over the batch but the gradient is the sum's: N times too large.",
        fails="the mean's, not the sum's",
        replace=(("return float(loss), grad / n",
                  "return float(loss), grad  # MISTAKE: the gradient of the sum, not of the mean"),),
    ),
    Mistake(
        "ex07", "decay_after_momentum",
        effect="Weight decay added after the momentum buffer instead of to the gradient before it.",
        fails="with weight decay",
        replace=(
            ("    g = g + weight_decay * p\n", ""),
            ("return p - lr * g, None", "return p - lr * (g + weight_decay * p), None"),
            ("return p - lr * buffer, buffer",
             "return p - lr * (buffer + weight_decay * p), buffer  # MISTAKE: decay after the momentum"),
        ),
    ),
    Mistake(
        "ex07", "lr_in_buffer",
        effect="The learning rate scales each gradient as it enters the buffer (Sutskever et al.): the "
        "same as PyTorch's while lr is constant, different once it changes.",
        fails="learning rate changes",
        replace=(
            ("buffer = g.copy() if buffer is None else momentum * buffer + g",
             "buffer = lr * g if buffer is None else momentum * buffer + lr * g  # MISTAKE: Sutskever's"),
            ("return p - lr * buffer, buffer", "return p - buffer, buffer"),
        ),
    ),
    Mistake(
        "ex07", "buffer_in_place",
        effect="The momentum buffer is updated in place (buffer *= momentum; buffer += g): the numbers are "
        "right, but the caller's array, which it may still hold (a saved state, a copy for logging), "
        "changes.",
        fails="leaves its inputs unchanged",
        cause="changed p, g, buffer in place",
        replace=(("    buffer = g.copy() if buffer is None else momentum * buffer + g",
                  "    if buffer is None:\n"
                  "        buffer = g.copy()\n"
                  "    else:  # MISTAKE: writes into the caller's buffer\n"
                  "        buffer *= momentum\n"
                  "        buffer += g"),),
    ),
    Mistake(
        "ex08", "backward_ignores_padding",
        effect="The backward forgets the padding offset: gradients land shifted by the padding.",
        fails="dx equals the reference",
        # The forward has the same line: the backward's is the one followed by `g = grad`.
        replace=((
            "h, v = oh * stride - padding + i, ow * stride - padding + j\n"
            "                    if 0 <= h < H and 0 <= v < W:\n"
            "                        g = grad",
            "h, v = oh * stride + i, ow * stride + j  # MISTAKE: the padding offset is forgotten\n"
            "                    if 0 <= h < H and 0 <= v < W:\n"
            "                        g = grad",
        ),),
    ),
    Mistake(
        "ex08", "float64_output",
        effect="The forward's output is np.zeros(shape), float64 whatever the input: a float32 network "
        "silently computes its convolutions in float64 and doubles their memory.",
        fails="float32 in, float32 out",
        cause="float64 whatever the input",
        replace=(("    y = np.zeros((N, C_out, Ho, Wo), dtype=x.dtype)  # float32 in, float32 out",
                  "    y = np.zeros((N, C_out, Ho, Wo))  # MISTAKE: float64 whatever x is"),),
    ),
    Mistake(
        "ex08", "flipped_kernel",
        effect="The forward flips the kernel (a true convolution, as in signal processing); "
        "deep-learning libraries compute the cross-correlation.",
        fails="forward equals the loop reference",
        replace=(("@ w[:, :, i, j].T", "@ w[:, :, k - 1 - i, k - 1 - j].T  # MISTAKE: flipped"),),
    ),
    Mistake(
        "ex09", "channel_last_columns",
        effect="im2col orders each row's columns (i, j, c) instead of (c, i, j): the matrix no longer "
        "lines up with w.reshape(C_out, -1).",
        fails="im2col equals the library's",
        replace=((
            "            cols[:, oh, ow] = xp[:, :, rows, columns]",
            "            # MISTAKE: columns in (i, j, c) order\n"
            "            cols[:, oh, ow] = xp[:, :, rows, columns]"
            ".transpose(0, 2, 3, 1).reshape(N, C, kernel, kernel)",
        ),),
    ),
    Mistake(
        "ex09", "col2im_overwrites",
        effect="col2im overwrites instead of adding: a pixel shared by overlapping windows keeps only "
        "the last window's gradient.",
        fails="transpose of im2col",
        replace=(("+= fields[:, oh, ow]  # add: windows overlap when stride < kernel",
                  "= fields[:, oh, ow]  # MISTAKE: overwrites instead of adding"),),
    ),
    Mistake(
        "ex10", "all_ties",
        effect="Every element equal to the window's maximum gets the gradient: with ties the total "
        "gradient grows.",
        fails="exactly one input",
        replace=((
            "            first = flat.argmax(axis=2)  # argmax returns the first maximum: the tie rule\n"
            "            i, j = np.unravel_index(first, (kernel, kernel))\n"
            "            for n in range(x.shape[0]):\n"
            "                for c in range(x.shape[1]):\n"
            "                    dx[n, c, oh * stride + i[n, c], ow * stride + j[n, c]]"
            " += grad[n, c, oh, ow]",
            "            winners = window == flat.max(axis=2)[:, :, None, None]"
            "  # MISTAKE: every tied maximum wins\n"
            "            g = grad[:, :, oh, ow][:, :, None, None]\n"
            "            dx[:, :, oh * stride : oh * stride + kernel, ow * stride : ow * stride + kernel]"
            " += winners * g",
        ),),
    ),
    Mistake(
        "ex10", "overwrites",
        effect="An element that wins several overlapping windows keeps only the last window's gradient.",
        fails="exactly one input",
        replace=(("] += grad[n, c, oh, ow]", "] = grad[n, c, oh, ow]  # MISTAKE: overwrites"),),
    ),
    Mistake(
        "ex11", "no_mean_term",
        effect="The backward without the mean's term: as if the batch mean were a constant.",
        fails="dx sums to zero over each channel",
        replace=(("m * dy - dbeta.reshape(per_channel) - xhat * dgamma.reshape(per_channel)",
                  "m * dy - xhat * dgamma.reshape(per_channel)  # MISTAKE: no - sum(dy), the mean's term"),),
    ),
    Mistake(
        "ex11", "no_variance_term",
        effect="The backward without the variance's term: as if the batch variance were a constant.",
        fails="dx * xhat sums to zero",
        replace=(("m * dy - dbeta.reshape(per_channel) - xhat * dgamma.reshape(per_channel)",
                  "m * dy - dbeta.reshape(per_channel)  # MISTAKE: the variance's term is missing"),),
    ),
    Mistake(
        "ex11", "centres_x_in_place",
        effect="`x -= mean` centres the caller's array in place: dx is right, but the layer's input, which "
        "the caller still holds (for the next backward, for the skip connection), is changed.",
        fails="leaves its inputs unchanged",
        cause="changed",
        replace=(("    xhat = (x - mean) * inv_std",
                  "    x -= mean  # MISTAKE: changes the caller's array\n    xhat = x * inv_std"),),
    ),
    Mistake(
        "ex11", "eps_outside_sqrt",
        effect="eps added to the standard deviation instead of the variance: the same where the variance "
        "is much larger than eps, wrong where it is not.",
        fails="variances below eps",
        cause="inside the square root",
        replace=(("inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)",
                  "inv_std = 1.0 / (np.sqrt(x.var(axis=axes, keepdims=True)) + eps)  # MISTAKE: eps"),),
    ),
    Mistake(
        "ex11", "one_pass_variance",
        effect="The variance in one pass, E[x^2] - E[x]^2: right in float64, but it cancels: its float32 "
        "error grows with (mean / spread)^2, a thousand times the two-pass error at a mean of 1e3 spreads.",
        fails="float32 results as accurate",
        cause="E[x^2] - E[x]^2",
        replace=(("inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)",
                  "inv_std = 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) - mean * mean + eps)"
                  "  # MISTAKE: one pass"),),
    ),
    Mistake(
        "ex12", "relu_before_add",
        effect="The ReLU comes before the addition instead of after it: the block's output can be negative.",
        fails="output equals the library's",
        replace=((
            "        out = self.bn2(self.conv2(out))\n"
            "        return self.relu(out + identity)",
            "        out = self.relu(self.bn2(self.conv2(out)))  # MISTAKE: ReLU before the addition\n"
            "        return out + identity",
        ),),
    ),
    Mistake(
        "ex12", "stride_on_conv2",
        effect="The stride sits on conv2 instead of conv1: same keys, shapes and output size, other numbers.",
        fails="output equals the library's",
        replace=(
            ("nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)",
             "nn.Conv2d(inplanes, planes, kernel_size=3, stride=1, padding=1, bias=False)  # MISTAKE"),
            ("nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)",
             "nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)"),
        ),
    ),
    Mistake(
        "ex13", "relu_after_add",
        effect="A ReLU after the addition, as in the original block: the identity path is no longer clean.",
        fails="output equals the library's",
        replace=(("return out + identity",
                  "return self.relu(out + identity)  # MISTAKE: a ReLU after the addition"),),
    ),
    Mistake(
        "ex13", "shortcut_reads_x",
        effect="The projection shortcut reads the raw input x instead of the pre-activated relu(bn1(x)).",
        fails="output equals the library's",
        replace=(("else self.downsample(out)", "else self.downsample(x)  # MISTAKE: not relu(bn1(x))"),),
    ),
    Mistake(
        "ex14", "conv_bias",
        effect="conv3 keeps its bias: an extra key and parameters that the BN after it makes useless.",
        fails="state-dict keys",
        replace=(("nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)",
                  "nn.Conv2d(planes, planes * self.expansion, kernel_size=1)  # MISTAKE: a bias"),),
    ),
    Mistake(
        "ex14", "stride_on_first_1x1",
        effect="The stride on the first 1x1 convolution (the paper's v1) instead of the 3x3 (torchvision's "
        "v1.5): keys, shapes and parameter count match, the numbers do not.",
        fails="output equals the library's",
        replace=(
            ("nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)",
             "nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)  # MISTAKE"),
            ("kernel_size=3, stride=stride,", "kernel_size=3, stride=1,"),
        ),
    ),
    Mistake(
        "ex15", "downsample_only_for_stride",
        effect="A projection only when the stride is not 1: a stage that changes the channel count at "
        "stride 1 (the first stage of ResNet-50) has no valid shortcut.",
        fails="keys",
        replace=(("if stride != 1 or inplanes != outplanes:",
                  "if stride != 1:  # MISTAKE: a change of channels needs a projection too"),),
    ),
    Mistake(
        "ex15", "stride_on_every_block",
        effect="Every block gets the stride and the downsample, not just the first.",
        fails="output equals",
        replace=(("[block(outplanes, planes) for _ in range(1, blocks)]",
                  "[block(outplanes, planes, stride, downsample) for _ in range(1, blocks)]  # MISTAKE"),),
    ),
    Mistake(
        "ex16", "hook_order",
        effect="The norms are listed in the order the hooks fire, which is last block first.",
        fails="first block first",
        replace=(("return [norms[i] for i in range(len(norms))]",
                  "return list(norms.values())  # MISTAKE: in the order the hooks fired"),),
    ),
    Mistake(
        "ex16", "hooks_on_outputs",
        effect="Hooks on each block's output instead of its input: every norm is one block late.",
        fails="first block first",
        replace=(  # `h = block(h)` moves above the hook
            ("\n        h = block(h)", ""),
            ("        h.register_hook(",
             "        h = block(h)  # MISTAKE: the hook is on the output\n        h.register_hook("),
        ),
    ),
    Mistake(
        "ex17", "not_flipped",
        effect="The spread gradient is correlated with the kernel as it is, not flipped: the backward of a "
        "convolution is a correlation with the kernel turned by 180 degrees.",
        fails="dx equals the reference",
        replace=(("    flipped = w[:, :, ::-1, ::-1]  # (C_out, C_in, k, k), flipped in space",
                  "    flipped = w  # MISTAKE: not flipped"),),
    ),
    Mistake(
        "ex17", "rows_no_window_reads",
        effect="The rows and columns past the last window are forgotten: dx is too small whenever the "
        "stride does not divide H + 2p - k.",
        fails="dx has x's shape",
        cause="no window read are missing",
        replace=(("    extra_h = H + 2 * padding - k - (Ho - 1) * stride\n"
                  "    extra_w = W + 2 * padding - k - (Wo - 1) * stride",
                  "    extra_h = extra_w = 0  # MISTAKE: the rows no window read are dropped"),),
    ),
    Mistake(
        "ex18", "inverse_not_transposed",
        effect="BT is M^-1 instead of its transpose: that computes the convolution's interpolation, not "
        "the correlation's transposed one.",
        fails="correlation of d with g",
        replace=(("return H.T.copy(), G, np.linalg.inv(M).T",
                  "return H.T.copy(), G, np.linalg.inv(M)  # MISTAKE"),),
    ),
    Mistake(
        "ex18", "evaluation_not_transposed",
        effect="AT is H itself, the evaluation of a at the points, not its transpose: a (4, 2) matrix.",
        fails="AT is (2, 4)",
        replace=(("return H.T.copy(), G, np.linalg.inv(M).T", "return H, G, np.linalg.inv(M).T  # MISTAKE"),),
    ),
    Mistake(
        "ex19", "xavier",
        effect="Variance 1 / fan_in (LeCun's, Xavier's for equal fans): a ReLU halves the second moment, so "
        "30 layers shrink the signal 2^30 times.",
        fails="30 layers keep",
        cause="the gain is wrong",
        replace=(("std = np.sqrt(2.0 / ((1.0 + negative_slope**2) * fan_in))",
                  "std = np.sqrt(1.0 / fan_in)  # MISTAKE: no gain for the (leaky) ReLU"),),
    ),
    Mistake(
        "ex19", "relu_gain_always",
        effect="The ReLU's gain 2 whatever the slope: right for a = 0, too large for a leaky ReLU, 2^30 "
        "too large over 30 linear layers (a = 1).",
        fails="30 layers keep",
        cause="the gain is wrong",
        replace=(("std = np.sqrt(2.0 / ((1.0 + negative_slope**2) * fan_in))",
                  "std = np.sqrt(2.0 / fan_in)  # MISTAKE: the slope is ignored"),),
    ),
    Mistake(
        "ex19", "fan_in_channels_only",
        effect="fan_in is C_in, forgetting the k * k kernel positions: a 3x3 conv's weights are 3 times too "
        "large, a linear layer's right.",
        fails="the weights' variance",
        cause="fan_in is not",
        replace=(("fan_in = int(np.prod(shape[1:]))",
                  "fan_in = shape[1]  # MISTAKE: C_in, not C_in * k * k"),),
    ),
    Mistake(
        "ex20", "backward_as_in_lesson_7",
        effect="Lesson 7's row-by-row backward: the right J, but every parameter's .grad (and x.grad) is "
        "changed, which would corrupt the next optimizer step.",
        fails="leaves its inputs unchanged",
        cause="touches no .grad",
        replace=(("        (dx,) = tr.autograd.grad(out, x, grad_outputs=tr.Tensor(seed))\n"
                  "        rows.append(dx.detach().numpy().ravel())",
                  "        x.grad = None  # MISTAKE: backward adds into every parameter's .grad\n"
                  "        out.backward(seed)\n"
                  "        rows.append(x.grad.numpy().ravel().copy())"),),
    ),
    Mistake(
        "ex20", "transposed",
        effect="J transposed: J[j, k] = d out_k / d x_j; the same as J only where the Jacobian is symmetric.",
        fails="J equals",
        replace=(("    return np.array(rows, dtype=x.dtype)",
                  "    return np.array(rows, dtype=x.dtype).T  # MISTAKE"),),
    ),
    # ---- a new learner's own mistakes the grader passed (issue 24's review), and the two known gaps ----
    Mistake(
        "ex01", "grad_aliased",
        effect="A leaf's first .grad is the gradient array itself, not a copy, and later backward calls add "
        "into it in place: that array can be a read-only broadcast view, or shared with another leaf.",
        fails=".grad accumulates",
        cause="read-only",
        replace=(("            node.grad = Tensor(grad.copy()) if node.grad is None"
                  " else Tensor(node.grad.numpy() + grad)",
                  "            if node.grad is None:\n"
                  "                node.grad = Tensor(grad)  # MISTAKE: the array itself, not a copy\n"
                  "            else:\n"
                  "                node.grad.numpy()[...] += grad"),),
    ),
    Mistake(
        "ex01", "float16_gradients",
        effect="Each gradient passes through float16 on the way (to save memory) and is cast back: the "
        "dtype is right, float64 is exact, but a float32 graph keeps only about 3 digits.",
        fails="float32 results as accurate",
        cause="float32 precision",
        replace=(("g = unbroadcast(np.asarray(g, dtype=inp.dtype), inp.shape)",
                  "g = unbroadcast(np.asarray(g, dtype=np.float16 if inp.dtype == np.float32 else inp.dtype)"
                  ".astype(inp.dtype), inp.shape)  # MISTAKE"),),
    ),
    Mistake(
        "ex02", "backward_squares_saved_output",
        effect="The backward squares the saved output in place: the forward's result (the next layer's "
        "input) changes, and a second backward reads z^2 instead of z.",
        fails="leaves its inputs unchanged",
        cause="backward wrote into an array it saved",
        replace=(("        return (grad * (1 - self.z * self.z),)",
                  "        z = self.z\n"
                  "        z *= z  # MISTAKE: writes into the saved output\n"
                  "        return (grad * (1 - z),)"),),
    ),
    Mistake(
        "ex03", "float64_accumulator",
        effect="The sum is taken with dtype=np.float64 (a good accumulator) and returned as it is: float32 "
        "gradients come back float64.",
        fails="float32 in, float32 out",
        cause="asks for float64",
        replace=(("    return grad.sum(axis=ones, keepdims=True)",
                  "    return grad.sum(axis=ones, keepdims=True, dtype=np.float64)  # MISTAKE: "
                  "float64 out"),),
    ),
    Mistake(
        "ex05", "flat_copy",
        effect="x.reshape(-1) of a non-contiguous x is a copy: the perturbation never reaches f, and the "
        "numeric gradient is 0.",
        fails="equals the analytic gradient",
        cause="never reached f",
        replace=(("    x = x.copy()\n", "    flat = x.reshape(-1)  # MISTAKE: a copy when x is "
                                        "non-contiguous\n"),
                 ("for j in np.ndindex(x.shape):",
                  "for j in np.ndindex(x.shape):\n        j = np.ravel_multi_index(j, x.shape)"),
                 ("        original = x[j]", "        original = flat[j]"),
                 ("        x[j] = original + eps", "        flat[j] = original + eps"),
                 ("        x[j] = original - eps", "        flat[j] = original - eps"),
                 ("        x[j] = original\n", "        flat[j] = original\n"),
                 ("        grad[j] =", "        grad.flat[j] =")),
    ),
    Mistake(
        "ex06", "column_max",
        effect="The maximum is taken over the batch (axis=0), per class: subtracting a different constant "
        "from each class changes every row's softmax.",
        fails="the loss equals",
        cause="along axis=1",
        replace=(("logits.max(axis=1, keepdims=True)", "logits.max(axis=0, keepdims=True)  # "
                                                       "MISTAKE: axis 0"),),
    ),
    Mistake(
        "ex07", "buffer_is_g",
        effect="The first step keeps g itself as the buffer (no copy): when the caller later changes its "
        "gradient array in place (backward adds into .grad), the momentum buffer changes with it.",
        fails="leaves its inputs unchanged",
        cause="changes when the caller changes g",
        replace=(("    g = g + weight_decay * p\n", "    if weight_decay:\n        g = g + "
                                                    "weight_decay * p\n"),
                 ("    buffer = g.copy() if buffer is None else momentum * buffer + g",
                  "    buffer = g if buffer is None else momentum * buffer + g  # MISTAKE: g "
                  "itself, no copy")),
    ),
    Mistake(
        "ex07", "buffer_without_momentum",
        effect="With momentum 0 the gradient is returned as the buffer (the grader crashed on this before).",
        fails="no buffer is kept",
        cause="return None",
        replace=(("return p - lr * g, None", "return p - lr * g, g  # MISTAKE: a buffer without momentum"),),
    ),
    Mistake(
        "ex11", "unbiased_variance",
        effect="The variance divides by M - 1 (ddof=1): xhat, dgamma and dx are all off by sqrt(M / "
               "(M - 1)).",
        fails="dx equals the reference",
        cause="biased one",
        replace=(("    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)",
                  "    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True, ddof=1) + eps)  # "
                  "MISTAKE: M - 1"),),
    ),
    Mistake(
        "ex12", "bn_momentum",
        effect="bn1 has momentum 0.01: the outputs are right, but the running statistics (and so every "
        "eval-mode output after training) drift ten times slower than torchvision's.",
        fails="state-dict keys",
        cause="keep BatchNorm2d's defaults",
        replace=(("self.bn1 = nn.BatchNorm2d(planes)", "self.bn1 = nn.BatchNorm2d(planes, "
                                                       "momentum=0.01)  # MISTAKE"),),
    ),
    Mistake(
        "ex12", "bn_by_hand",
        effect="bn1 is normalised by hand in training mode: the output and gradients are right, but its "
        "running statistics never move, so the block is wrong in eval mode after training.",
        fails="running statistics",
        cause="call each BN layer once per forward",
        replace=(("        out = self.relu(self.bn1(self.conv1(x)))",
                  "        out = self.conv1(x)\n"
                  "        if self.training:  # MISTAKE: by hand, the running statistics are never updated\n"
                  "            mean = out.mean(dim=(0, 2, 3), keepdim=True)\n"
                  "            var = ((out - mean) * (out - mean)).mean(dim=(0, 2, 3), keepdim=True)\n"
                  "            out = (out - mean) / (var + self.bn1.eps) ** 0.5 * "
                  "self.bn1.weight.reshape(1, -1, 1, 1)"
                  " + self.bn1.bias.reshape(1, -1, 1, 1)\n"
                  "        else:\n"
                  "            out = self.bn1(out)\n"
                  "        out = self.relu(out)"),),
    ),
    Mistake(
        "ex15", "same_block_repeated",
        effect="[block(...)] * (blocks - 1) repeats one object: the later blocks share their weights.",
        fails="state-dict keys",
        cause="repeats one object",
        replace=(("    layers += [block(outplanes, planes) for _ in range(1, blocks)]",
                  "    layers += [block(outplanes, planes)] * (blocks - 1)  # MISTAKE: one object, "
                  "repeated"),),
    ),
    Mistake(
        "ex18", "fixed_points",
        effect="The points passed in are ignored and the textbook's (0, 1, -1) used: the correlation is "
        "right, but the transforms are not the ones these points define.",
        fails="G evaluates g at the points given",
        cause="the points you are given",
        replace=(("    p = np.asarray(points, dtype=np.float64)",
                  "    p = np.asarray((0.0, 1.0, -1.0))  # MISTAKE: the points given are ignored"),),
    ),
    Mistake(
        "ex19", "uniform",
        effect="A uniform distribution of the right variance (kaiming_uniform): the variance and the depth "
        "checks pass, but the function is kaiming_normal.",
        fails="normal draws",
        cause="normal distribution",
        replace=(("return (std * rng.standard_normal(shape)).astype(dtype)",
                  "return (std * np.sqrt(3.0) * rng.uniform(-1.0, 1.0, shape)).astype(dtype)  # MISTAKE"),),
    ),
    Mistake(
        "ex19", "global_rng",
        effect="Draws from np.random's global state, not from the generator passed in: the caller's seed "
        "does not reproduce the weights.",
        fails="normal draws",
        cause="generator you are given",
        replace=(("return (std * rng.standard_normal(shape)).astype(dtype)",
                  "return (std * np.random.standard_normal(shape)).astype(dtype)  # MISTAKE: global state"),),
    ),
    Mistake(
        "ex20", "eval_inside",
        effect="The block is switched to eval mode to measure it: the Jacobian of another function (running "
        "statistics instead of the batch's), and the caller's block is left in eval mode.",
        fails="J equals",
        cause="leave its mode alone",
        replace=(("    while n_out is None or k < n_out:",
                  "    block.eval()  # MISTAKE: measures another function, and changes the caller's block\n"
                  "    while n_out is None or k < n_out:"),),
    ),
    Mistake(
        "ex01", "grad_as_array",
        effect="A leaf's .grad is set to a NumPy array instead of a Tensor (the grader crashed on this "
        "before).",
        fails="backward: every leaf's gradient",
        cause="is a Tensor, as in PyTorch",
        replace=(("            node.grad = Tensor(grad.copy()) if node.grad is None"
                  " else Tensor(node.grad.numpy() + grad)",
                  "            node.grad = grad.copy() if node.grad is None"
                  " else node.grad + grad  # MISTAKE"),),
    ),
    Mistake(
        "ex10", "no_return",
        effect="The function fills dx and forgets to return it: None (the grader crashed on this before).",
        fails="dx equals the reference",
        cause="is a `return` missing",
        replace=(("    return dx", "    dx = dx  # MISTAKE: no return"),),
    ),
    Mistake(
        "ex05", "own_eps",
        effect="The step is a hard-coded 1e-6, whatever eps is passed in: with float32 input the step is "
        "lost in rounding, and the caller cannot choose it.",
        fails="error of order eps^2",
        cause="follow the eps passed in",
        replace=(("    x = x.copy()\n",
                  "    x = x.copy()\n    eps = 1e-6  # MISTAKE: the eps passed in is ignored\n"),),
    ),
    Mistake(
        "ex18", "correlate_ignores_transforms",
        effect="correlate_f23 returns np.correlate(d, g) and never uses the transforms: right values, but "
        "the Winograd algorithm is not what runs.",
        fails="the correlation of d with g",
        cause="with the transforms passed in",
        replace=(("    return AT @ ((G @ g.astype(d.dtype)) * (BT @ d))",
                  "    return np.correlate(d, g, 'valid').astype(d.dtype)  # MISTAKE: transforms unused"),),
    ),
)
