"""Pictures drawn from live objects: autograd graphs and residual-block diagrams."""

from tinyres.viz.block import analyse_block, draw_block
from tinyres.viz.graph import Graph, draw_graph, trace

__all__ = ["Graph", "analyse_block", "draw_block", "draw_graph", "trace"]
