"""Pictures drawn from live objects: autograd graphs and residual-block diagrams."""

from tinyres.viz.graph import Graph, draw_graph, trace

__all__ = ["Graph", "draw_graph", "trace"]
