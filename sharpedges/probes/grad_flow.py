"""`grad-flow`: one backward pass reaches every trainable parameter, and an MoE router learns
from its balancing loss (SHP502)."""

from __future__ import annotations

import copy

from sharpedges.probes.adapter import ModelAdapter, read_outputs
from sharpedges.probes.catalog import FAIL, PASS, Verdict
from sharpedges.probes.measure import all_finite, mode, random_ids

BATCH, LENGTH = 4, 16  # 64 tokens, so every expert of a small MoE gets some


def _names(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def probe(adapter: ModelAdapter) -> Verdict:
    import torch
    import torch.nn.functional as F

    trainer = copy.deepcopy(adapter)  # gradients land on the copy, never on the caller's model
    ids = random_ids(trainer, BATCH, LENGTH, seed=0)
    targets = random_ids(trainer, BATCH, LENGTH, seed=1)
    with mode(trainer, True):
        trainer.model.zero_grad(set_to_none=True)
        outputs = read_outputs(trainer.forward(ids))
        loss = F.cross_entropy(outputs.logits.float().flatten(0, 1), targets.flatten())
        if outputs.aux_loss is not None:
            loss = loss + outputs.aux_loss
        loss.backward()
        trainable = [(name, param) for name, param in trainer.model.named_parameters() if param.requires_grad]
        missing = [name for name, param in trainable if param.grad is None]
        broken = [name for name, param in trainable if param.grad is not None and not all_finite(param.grad)]
        routers = trainer.router_parameters()
        router_names = [name for name, _ in routers]
        measured = {
            "trainable_parameters": len(trainable),
            "without_gradient": missing,
            "non_finite_gradient": broken,
            "router_parameters": router_names,
            "aux_loss": outputs.aux_loss is not None,
        }
        if missing or broken:
            found = [
                f"{len(missing)} get no gradient ({_names(missing)})" if missing else "",
                f"{len(broken)} get a NaN or inf gradient ({_names(broken)})" if broken else "",
            ]
            return Verdict(
                FAIL, f"of {len(trainable)} trainable parameters, {'; '.join(filter(None, found))}", measured
            )
        if not routers:
            return Verdict(
                PASS, f"all {len(trainable)} trainable parameters get a finite gradient (no MoE router)", measured
            )
        if outputs.aux_loss is None:
            return Verdict(
                FAIL,
                f"MoE router parameters ({_names(router_names)}) but the model "
                "returns no balancing loss (aux_loss): it is computed and dropped, or never computed "
                "(a model balanced without one says so with an adapter whose router_parameters() "
                "is empty)",
                measured,
            )
        trainer.model.zero_grad(set_to_none=True)
        aux_loss = read_outputs(trainer.forward(ids)).aux_loss
        if isinstance(aux_loss, torch.Tensor) and aux_loss.requires_grad:
            aux_loss.backward()
    router_norms = {name: 0.0 if param.grad is None else float(param.grad.norm()) for name, param in routers}
    measured["router_grad_norm_from_aux_loss"] = router_norms
    starved = [name for name, norm in router_norms.items() if norm == 0.0]
    if starved:
        return Verdict(
            FAIL,
            f"the balancing loss does not reach the router ({_names(starved)}): it is detached "
            "or built from something other than the router's probabilities",
            measured,
        )
    return Verdict(
        PASS,
        f"all {len(trainable)} trainable parameters get a finite gradient, and the router gets one "
        f"from the balancing loss (norm {min(router_norms.values()):.3g})",
        measured,
    )
