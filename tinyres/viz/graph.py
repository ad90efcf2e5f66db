"""Draw the autograd graph behind a tensor: micrograd's ``draw_dot``, for tensors.

Every tensor made by an operation points at the ``Function`` that made it
(``tensor.grad_fn``), and that function keeps its inputs (``grad_fn.inputs``). Following
those pointers from the result back to the leaves gives the graph ``backward`` walks.
``draw_graph`` draws it top to bottom: leaves (parameters, inputs) at the top, one box per
operation with its output shape, the result at the bottom.

The layout is layered, in the style of Sugiyama: a node's row is its *depth*, the
longest path from it to the result, so every arrow points down; within a row, nodes are
ordered by the mean position of their neighbours (the barycenter heuristic) to reduce
crossings. A graph bigger than ``max_nodes`` keeps the ``max_nodes`` nodes nearest the
result and folds the rest into one "… more nodes" box.

Gradient norms. ``backward()`` frees the graph (and keeps ``.grad`` only on leaves), so
drawing gradients takes three steps: ``trace`` the graph first (it records every node and
asks each one to keep its gradient), run ``backward``, then draw the trace::

    graph = trace(loss, params=dict(model.named_parameters()))
    loss.backward()
    draw_graph(graph, show_grad_norms=True)

>>> import tinyres as tr
>>> a = tr.tensor([1.0, 2.0], requires_grad=True)
>>> b = a + a
>>> c = b + b
>>> graph = trace(c, params={"a": a})
>>> [node.title for node in graph.nodes.values()]
['a', 'Add', 'Add']
>>> len(graph.edges)   # a -> b twice, b -> c twice
4
>>> c.sum().backward()
>>> fig = draw_graph(graph, show_grad_norms=True)
>>> sorted(t.get_text() for t in fig.axes[0].texts if "|grad|" in t.get_text())[-1]
'a\\n2\\n|grad| = 5.66'
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from tinyres.engine import Function, Tensor, _topological_order
from tinyres.viz.canvas import arrow, box, new_canvas

# Inches: box size and the spacing of rows and columns.
_BOX_W, _BOX_H = 1.8, 0.62
_COL, _ROW = 2.3, 1.0
_LANE = 0.12  # clearance and spacing of the lanes that skip connections run down
_MARGIN = 0.25

_COLORS = {
    "op": "#cfe2f3",  # an operation (a Function); its box shows the output
    "param": "#d9ead3",  # a named leaf, e.g. a model parameter
    "leaf": "#fff2cc",  # an unnamed leaf that requires grad
    "input": "#eeeeee",  # a tensor that does not require grad (data, targets)
    "more": "#ffffff",  # the nodes cut off by max_nodes
}


@dataclass
class Node:
    """One box of the picture: an op's output tensor, a leaf, or the cut-off rest.

    ``kind`` is one of "op", "param", "leaf", "input", "more"; ``title`` is the
    Function's name for an op, the given name (or "leaf"/"input") otherwise.
    """

    kind: str
    title: str
    tensor: Tensor | None = None

    def shape_text(self) -> str:
        if self.tensor is None:
            return ""
        return "×".join(map(str, self.tensor.shape)) or "scalar"

    def grad_norm(self) -> float | None:
        """‖dLoss/dtensor‖ once a backward pass has filled ``tensor.grad``."""
        if self.tensor is None or self.tensor.grad is None:
            return None
        return float(np.linalg.norm(np.asarray(self.tensor.grad._data, dtype=np.float64)))


@dataclass
class Graph:
    """A recorded autograd graph.

    ``nodes`` maps a key (the tensor's ``id``) to its ``Node``, every node after the
    nodes it was computed from; ``edges`` holds one ``(from_key, to_key)`` pair per use
    of a tensor as an input, so ``a + a`` gives two edges; ``root`` is the result's key.
    """

    nodes: dict[int, Node] = field(default_factory=dict)
    edges: list[tuple[int, int]] = field(default_factory=list)
    root: int = 0


def trace(tensor: Tensor, params: dict[str, Tensor] | None = None, *, keep_grads: bool = True) -> Graph:
    """Record the graph that produced ``tensor``.

    ``params`` names leaves (``dict(model.named_parameters())``; any tensor may be
    named, e.g. ``{"x": x}``). With ``keep_grads`` every intermediate tensor keeps its
    gradient in the next ``backward`` (``retain_grad``), so ``draw_graph(graph,
    show_grad_norms=True)`` can show it afterwards.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"trace: expected a tinyres Tensor, got {type(tensor).__name__}")
    names = {id(t): name for name, t in (params or {}).items()}
    graph = Graph(root=id(tensor))
    # The engine's own walk (iterative: a ResNet graph is deeper than Python's recursion
    # limit) gives the ops and grad-requiring leaves, each result before its inputs. A node
    # is drawn as the tensor it made; the inputs that need no gradient (data, targets),
    # which the walk skips, are read from each op's inputs and drawn just before their
    # first consumer.
    start = tensor if tensor.grad_fn is None else tensor.grad_fn
    tensor_of: dict[int, Tensor] = {id(start): tensor}
    no_grad_inputs: dict[int, list[Tensor]] = defaultdict(list)
    consumers_first: list[Tensor] = []
    for node in _topological_order(start):
        t = tensor_of[id(node)]
        consumers_first.append(t)
        if not isinstance(node, Function):
            continue
        if node.freed:
            raise RuntimeError(
                "draw_graph: the graph behind this tensor was freed by backward(). Draw it "
                "before backward(), or record it first: graph = trace(t); t.backward(); "
                "draw_graph(graph, show_grad_norms=True)"
            )
        if keep_grads:
            t.retain_grad()
        for parent, inp in zip(node.parents, node.inputs):
            if inp is t:  # an in-place op: one tensor object holds two versions
                raise ValueError(
                    f"draw_graph: {type(node).__name__} changed a tensor in place; the drawing follows "
                    "tensor objects, so write that step out of place (out = out + x) to draw it"
                )
            if isinstance(inp, Tensor):
                graph.edges.append((id(inp), id(t)))
                if parent is None:
                    no_grad_inputs[id(t)].append(inp)
                else:
                    tensor_of.setdefault(id(parent), inp)
    for t in reversed(consumers_first):  # producers first
        for inp in no_grad_inputs[id(t)]:
            graph.nodes.setdefault(id(inp), _node_for(inp, names))
        graph.nodes[id(t)] = _node_for(t, names)
    return graph


def _node_for(t: Tensor, names: dict[int, str]) -> Node:
    if t.grad_fn is not None:
        return Node("op", type(t.grad_fn).__name__, t)
    if id(t) in names:
        return Node("param" if t.requires_grad else "input", names[id(t)], t)
    return Node("leaf", "leaf", t) if t.requires_grad else Node("input", "input", t)


def depths(graph: Graph) -> dict[int, int]:
    """Each node's longest distance (in edges) to the result; the result has depth 0.

    >>> import tinyres as tr
    >>> a = tr.ones(2, requires_grad=True)
    >>> b = a * 2
    >>> c = a + b
    >>> g = trace(c, params={"a": a})
    >>> {g.nodes[k].title: d for k, d in depths(g).items()}
    {'Add': 0, 'Mul': 1, 'a': 2}
    """
    children: dict[int, list[int]] = defaultdict(list)
    for parent, child in graph.edges:
        children[parent].append(child)
    depth: dict[int, int] = {}
    # Consumers come after their inputs in graph.nodes, so walking it backwards sees
    # every consumer of a node before the node itself.
    for key in reversed(graph.nodes):
        depth[key] = max((depth[c] + 1 for c in children[key]), default=0)
    return depth


def _cut(graph: Graph, depth: dict[int, int], max_nodes: int) -> tuple[Graph, dict[int, int]]:
    """Keep the nodes nearest the result, at most ``max_nodes`` of them counting the
    "… more nodes" box that replaces the rest, and redirect the cut edges to that box."""
    if len(graph.nodes) <= max_nodes:
        return graph, depth
    count_at: dict[int, int] = defaultdict(int)
    for d in depth.values():
        count_at[d] += 1
    limit, kept = 0, 0
    while kept + count_at[limit] <= max_nodes - 1:
        kept += count_at[limit]
        limit += 1
    more_key = -1
    hidden = len(graph.nodes) - kept
    cut = Graph(root=graph.root)
    cut.nodes[more_key] = Node("more", f"… {hidden} more nodes")
    cut.nodes.update((k, n) for k, n in graph.nodes.items() if depth[k] < limit)
    redirected: set[int] = set()
    for parent, child in graph.edges:
        if child not in cut.nodes:
            continue
        if parent in cut.nodes:
            cut.edges.append((parent, child))
        elif child not in redirected:
            redirected.add(child)
            cut.edges.append((more_key, child))
    new_depth = {k: depth[k] for k in cut.nodes if k != more_key}
    new_depth[more_key] = limit
    return cut, new_depth


def _order_rows(graph: Graph, depth: dict[int, int]) -> list[list[int]]:
    """Rows from the top (deepest) down, each ordered to keep arrows short and few
    crossing: a few sweeps of the barycenter heuristic."""
    bottom = max(depth.values())
    rows: list[list[int]] = [[] for _ in range(bottom + 1)]
    for key in graph.nodes:
        rows[bottom - depth[key]].append(key)
    neighbours: dict[int, list[int]] = defaultdict(list)
    for parent, child in graph.edges:
        neighbours[parent].append(child)
        neighbours[child].append(parent)
    for sweep in range(4):
        # Even sweeps go down (order each row by the row above), odd sweeps go up.
        down = sweep % 2 == 0
        for r in range(1, len(rows)) if down else range(len(rows) - 2, -1, -1):
            rows[r] = _by_barycenter(rows[r], rows[r - 1] if down else rows[r + 1], neighbours)
    return rows


def _by_barycenter(row: list[int], ref: list[int], neighbours: dict[int, list[int]]) -> list[int]:
    """``row`` sorted by the mean position of each node's neighbours in row ``ref``
    (positions centred on 0); a node with none there keeps its own position."""
    in_ref = {k: i - (len(ref) - 1) / 2 for i, k in enumerate(ref)}
    own = {k: i - (len(row) - 1) / 2 for i, k in enumerate(row)}

    def barycenter(key: int) -> float:
        near = [in_ref[n] for n in neighbours[key] if n in in_ref]
        return sum(near) / len(near) if near else own[key]

    return sorted(row, key=barycenter)


def _routes(
    graph: Graph, rows: list[list[int]], where: dict[int, tuple[float, float]]
) -> list[list[tuple[float, float]]]:
    """The corner points of every edge's arrow, source to target.

    Each edge leaves its source's bottom and enters its target's top at its own "port",
    spread along the box edge in the order of the other ends, so repeated uses
    (b = a + a) show as parallel arrows. An edge that skips rows (a skip connection)
    would run behind the boxes in between, so it turns in the free space between rows
    and goes down a lane clear of every box it passes.
    """
    row_of = {key: r for r, row in enumerate(rows) for key in row}
    outgoing: dict[int, list[int]] = defaultdict(list)
    incoming: dict[int, list[int]] = defaultdict(list)
    for e, (parent, child) in enumerate(graph.edges):
        outgoing[parent].append(e)
        incoming[child].append(e)
    start_x: dict[int, float] = {}
    end_x: dict[int, float] = {}
    for key, (x, _) in where.items():
        leaving = sorted(outgoing[key], key=lambda e: (where[graph.edges[e][1]][0], e))
        start_x.update(zip(leaving, _ports(x, len(leaving))))
        arriving = sorted(incoming[key], key=lambda e: (where[graph.edges[e][0]][0], e))
        end_x.update(zip(arriving, _ports(x, len(arriving))))
    routes = []
    lanes: list[float] = []
    gap = (_ROW - _BOX_H) / 2
    for e, (parent, child) in enumerate(graph.edges):
        (sx, y0), (ex, y1) = (start_x[e], where[parent][1]), (end_x[e], where[child][1])
        top, bottom = (sx, y0 - _BOX_H / 2), (ex, y1 + _BOX_H / 2)
        between = [where[k][0] for r in range(row_of[parent] + 1, row_of[child]) for k in rows[r]]
        if not between:
            routes.append([top, bottom])
            continue
        lane = _free_lane(sx, ex, between, lanes)
        lanes.append(lane)
        below, above = y0 - _BOX_H / 2 - gap, y1 + _BOX_H / 2 + gap
        routes.append([top, (sx, below), (lane, below), (lane, above), (ex, above), bottom])
    return routes


def _free_lane(x_from: float, x_to: float, boxes: list[float], taken: list[float]) -> float:
    """An x for a vertical segment that misses boxes centred at ``boxes`` and keeps
    apart from lanes already ``taken``, as close to ``x_from`` and ``x_to`` as possible."""
    clear = _BOX_W / 2 + _LANE
    candidates = [x_from, x_to] + [
        b + side * (clear + k * _LANE) for b in boxes for side in (-1, 1) for k in range(3)
    ]
    free = [
        c for c in candidates
        if all(abs(c - b) >= clear - 1e-9 for b in boxes) and all(abs(c - t) >= 0.8 * _LANE for t in taken)
    ]
    return min(free, key=lambda c: (abs(c - x_from) + abs(c - x_to), -c))


def _ports(x: float, n: int) -> list[float]:
    """``n`` x positions spread symmetrically about a box's centre ``x``."""
    spacing = min(0.3, 0.8 * _BOX_W / max(n - 1, 1))
    return [x + (i - (n - 1) / 2) * spacing for i in range(n)]


def draw_graph(
    tensor: Tensor | Graph,
    show_grad_norms: bool = False,
    max_nodes: int = 60,
    params: dict[str, Tensor] | None = None,
) -> Figure:
    """Draw the autograd graph that produced ``tensor`` (or a ``Graph`` from ``trace``).

    One box per operation (its Function's name and output shape), leaves on top
    (green: named by ``params``, yellow: unnamed and requiring grad, grey: no grad).
    ``show_grad_norms`` adds ‖gradient‖ to each box: pass a graph recorded with
    ``trace`` before ``backward``. Graphs with more than ``max_nodes`` boxes keep the
    part nearest the result. Returns the matplotlib ``Figure``; save it with
    ``fig.savefig("graph.png")``.
    """
    if max_nodes < 2:
        raise ValueError(f"draw_graph: max_nodes must be at least 2, got {max_nodes}")
    if isinstance(tensor, Graph):
        if params is not None:
            raise ValueError("draw_graph: pass params to trace(), which names the graph's leaves")
        graph = tensor
    else:
        graph = trace(tensor, params, keep_grads=False)
    if show_grad_norms and all(n.grad_norm() is None for n in graph.nodes.values()):
        raise RuntimeError(
            "draw_graph: show_grad_norms needs gradients, and no node has one. Record the "
            "graph, run backward, then draw: graph = trace(loss); loss.backward(); "
            "draw_graph(graph, show_grad_norms=True)"
        )
    graph, depth = _cut(graph, depths(graph), max_nodes)
    rows = _order_rows(graph, depth)

    # Positions in inches, relative: x centred on 0, y = 0 at the top row's centre.
    where: dict[int, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        for i, key in enumerate(row):
            where[key] = ((i - (len(row) - 1) / 2) * _COL, -r * _ROW)
    routes = _routes(graph, rows, where)

    xs = [x for x, _ in where.values()]
    left = min([min(xs) - _BOX_W / 2] + [x for route in routes for x, _ in route])
    right = max([max(xs) + _BOX_W / 2] + [x for route in routes for x, _ in route])
    width = right - left + 2 * _MARGIN
    height = (len(rows) - 1) * _ROW + _BOX_H + 2 * _MARGIN
    fig, ax = new_canvas(width, height)
    dx, dy = _MARGIN - left, height - _MARGIN - _BOX_H / 2

    for key, node in graph.nodes.items():
        lines = [node.title, node.shape_text()]
        norm = node.grad_norm() if show_grad_norms else None
        if norm is not None:
            lines.append(f"|grad| = {norm:.3g}")
        x, y = where[key]
        box(ax, x + dx, y + dy, _BOX_W, _BOX_H, "\n".join(filter(None, lines)), _COLORS[node.kind],
            dashed=node.kind == "more")
    for route in routes:
        points = [(x + dx, y + dy) for x, y in route]
        arrow(ax, points[0], points[-1], via=tuple(points[1:-1]))
    return fig
