"""A 48-layer encoder built from torch.nn blocks: post-norm by default, which does not train this deep."""

import torch.nn as nn


class DeepEncoder(nn.Module):
    def __init__(self, d_model: int = 1024, n_heads: int = 16, num_layers: int = 48) -> None:
        super().__init__()
        # BUG (SHP301): norm_first defaults to False, i.e. post-norm; 48 of them diverge without warm-up tricks.
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=4 * d_model, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers)

    def forward(self, x, padding_mask=None):
        return self.encoder(x, src_key_padding_mask=padding_mask)
