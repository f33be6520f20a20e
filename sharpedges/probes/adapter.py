"""How the probes drive a model: Hugging Face conventions by default, overridable per model.

`ModelAdapter(model)` calls ``model(input_ids, attention_mask=..., position_ids=...)`` and
decodes with ``past_key_values=`` / ``use_cache=True`` where the model's ``forward`` takes those
arguments. A model with other conventions gets a subclass that overrides what differs (see
`sharpedges.probes.reference.TinyDecoderAdapter` and the README's "Runtime probes").
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

# A module named exactly `router` or `gate` (Mixtral's `block_sparse_moe.gate`, Switch's `router`),
# never a SwiGLU `gate_proj`.
ROUTER_NAME = re.compile(r"(^|\.)(router|gate)(\.|$)")


class ProbeSkip(Exception):
    """The probe does not apply to this model; the message says why. An adapter may raise it too."""


@dataclass
class Outputs:
    logits: Tensor  # (B, T, V)
    aux_loss: Tensor | None = None  # an MoE load-balancing loss, where the model returns one
    cache: Any = None  # what the model returned as past_key_values


def read_outputs(raw: Any) -> Outputs:
    """Logits (B, T, V) from a tensor, an `Outputs`, an object or mapping with `logits` (a Hugging
    Face ModelOutput), or a tuple whose first item is the logits (`return_dict=False`)."""
    from torch import Tensor

    if isinstance(raw, Outputs):
        return raw
    if isinstance(raw, Tensor):
        return Outputs(raw)
    if isinstance(raw, dict) and "logits" in raw:
        return Outputs(raw["logits"], raw.get("aux_loss"), raw.get("past_key_values"))
    if hasattr(raw, "logits"):
        return Outputs(raw.logits, getattr(raw, "aux_loss", None), getattr(raw, "past_key_values", None))
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], Tensor):
        return Outputs(raw[0])
    raise TypeError(
        f"the model returned {type(raw).__name__}: expected logits (B, T, V), an object with "
        "`.logits`, or a tuple starting with the logits"
    )


class ModelAdapter:
    """The probes' view of a model. Override any of these in a subclass for a model that does not
    follow the Hugging Face conventions; the class attributes below may be set to plain values."""

    def __init__(self, model: nn.Module) -> None:
        from torch import nn

        if not isinstance(model, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    def _accepts(self, argument: str) -> bool:
        return argument in inspect.signature(self.model.forward).parameters

    @property
    def causal(self) -> bool:
        """False for a bidirectional model (the causal probe is then skipped): a Hugging Face model
        whose config is not a decoder and whose class is not a causal or LM-head model."""
        config = getattr(self.model, "config", None)
        if config is None or re.search(r"CausalLM|LMHead", type(self.model).__name__):
            return True
        return bool(getattr(config, "is_decoder", True))

    @property
    def supports_attention_mask(self) -> bool:
        return self._accepts("attention_mask")

    @property
    def supports_cache(self) -> bool:
        return self._accepts("past_key_values")

    @property
    def vocab_size(self) -> int:
        from torch import nn

        get_embeddings = getattr(self.model, "get_input_embeddings", None)
        embedding = (
            get_embeddings()
            if get_embeddings
            else next((module for module in self.model.modules() if isinstance(module, nn.Embedding)), None)
        )
        if embedding is None:
            raise TypeError("cannot tell the vocabulary size (no nn.Embedding): set `vocab_size` on an adapter")
        return embedding.num_embeddings

    @property
    def device(self) -> torch.device:
        import torch

        first = next(self.model.parameters(), None)
        return torch.device("cpu") if first is None else first.device

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Any:
        """Logits for `input_ids` (B, T); `attention_mask` (B, T) is 1 for tokens, 0 for padding.
        Positions count real tokens only, as Hugging Face's generate() does for left padding."""
        kwargs: dict[str, Any] = {}
        if self._accepts("output_router_logits"):
            kwargs["output_router_logits"] = True  # Hugging Face MoE models return aux_loss only then
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
            if self._accepts("position_ids"):
                kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids, **kwargs)

    def new_cache(self, batch_size: int, max_len: int) -> Any:
        """An empty cache for `batch_size` sequences of up to `max_len` tokens (None: the model makes its own)."""
        return None

    def forward_cached(self, input_ids: Tensor, cache: Any) -> tuple[Any, Any]:
        """Continue the sequences held in `cache` with `input_ids` (B, T): (outputs, updated cache)."""
        raw = self.model(input_ids, past_key_values=cache, use_cache=True)
        outputs = read_outputs(raw)
        if outputs.cache is None:
            raise ProbeSkip("the model returned no past_key_values with use_cache=True")
        return raw, outputs.cache

    def router_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The MoE router's trainable parameters (none for a dense model)."""
        return [
            (name, param)
            for name, param in self.model.named_parameters()
            if param.requires_grad and ROUTER_NAME.search(name)
        ]


def as_adapter(target: Any) -> ModelAdapter:
    return target if isinstance(target, ModelAdapter) else ModelAdapter(target)
