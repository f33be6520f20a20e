"""Reference implementations that the sharpedges lint rules point to.

Small PyTorch modules, written to be read top to bottom and copied: each rule's
``reference_impl`` names a symbol in one of them (``attention:attention_ref``,
``moe:load_balancing_loss``, ...). They need the optional ``torch`` extra
(``pip install sharpedges[torch]``); the linter itself never imports them.

- ``attention``: eager oracle, mask builders, ``repeat_kv``, the MHA/GQA/MQA module.
- ``positional``: RoPE (fp32, both layouts, partial), ALiBi, sinusoidal, learned.
- ``norm``: RMSNorm and LayerNorm computed in fp32.
- ``block``: pre-norm and DeepNorm blocks, a tiny decoder with a final norm.
- ``kv_cache``: static, sliding-window and paged caches.
- ``moe``: fp32 top-k router, loop and sorted dispatch, Switch and z losses.
- ``flops``: attention FLOP counter and SDPA backend pinning.
"""
