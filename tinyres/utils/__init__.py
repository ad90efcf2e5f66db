"""``tinyres.utils``: PyTorch's ``torch.utils`` names that programs import."""

from tinyres.utils import data

__all__ = ["data"]
