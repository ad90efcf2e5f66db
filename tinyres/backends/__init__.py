"""``tinyres.backends``: settings PyTorch programs write for their GPU libraries."""

from tinyres.backends import cudnn

__all__ = ["cudnn"]
