"""Neural-network layers (``Module`` subclasses) and their functional forms."""

from tinyres.nn import functional

__all__ = ["functional"]
