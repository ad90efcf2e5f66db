"""cuDNN's flags, accepted so that ``torch.backends.cudnn.benchmark = True`` runs.

tinyres has no cuDNN: the flags do nothing. Its CPU results are deterministic already.

>>> import tinyres as torch
>>> torch.backends.cudnn.benchmark = True
>>> torch.backends.cudnn.is_available()
False
"""

benchmark = False
deterministic = False
enabled = True


def is_available() -> bool:
    return False
