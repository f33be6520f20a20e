"""RMSNorm and LayerNorm, computed in fp32 whatever the input dtype.

Both return the INPUT dtype: the statistics and the weight multiply run in fp32
(a bf16 mean of squares loses the small channels), then the result is cast back
so the next matmul runs in the model's precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension (Zhang & Sennrich)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        x32 = x.to(compute_dtype)
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.to(compute_dtype)).to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nanoGPT), statistics in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        bias = None if self.bias is None else self.bias.to(compute_dtype)
        normed = F.layer_norm(x.to(compute_dtype), x.shape[-1:], self.weight.to(compute_dtype), bias, self.eps)
        return normed.to(x.dtype)
