"""Neural-network layers (``Module`` subclasses), their functional forms, and init.

>>> import tinyres as torch
>>> import tinyres.nn as nn
>>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
>>> model(torch.randn(2, 3, 8, 8)).shape
tinyres.Size([2, 4, 8, 8])
"""

from tinyres.nn import functional, init, parallel, utils
from tinyres.nn.activation import Dropout, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from tinyres.nn.batchnorm import BatchNorm1d, BatchNorm2d
from tinyres.nn.container import ModuleDict, ModuleList, Sequential
from tinyres.nn.conv import Conv2d
from tinyres.nn.flatten import Flatten
from tinyres.nn.linear import Identity, Linear
from tinyres.nn.loss import CrossEntropyLoss, MSELoss, NLLLoss
from tinyres.nn.module import Module
from tinyres.nn.normalization import GroupNorm, LayerNorm
from tinyres.nn.parallel import DataParallel
from tinyres.nn.parameter import Parameter
from tinyres.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from tinyres.nn.sync_batchnorm import SyncBatchNorm

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "DataParallel",
    "Dropout",
    "Flatten",
    "GroupNorm",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "SyncBatchNorm",
    "Tanh",
    "functional",
    "init",
    "parallel",
    "utils",
]
