"""SHP702 beyond its spec examples: mutations that drop an assignment, and what is not a tensor."""

from __future__ import annotations

import pytest

from tests.helpers import findings


def found(source: str) -> list[tuple[int, str]]:
    return [(d.line, d.message) for d in findings("SHP702", source)]


ATTENTION = """
    import torch
    import torch.nn.functional as F

    def attention(query, key, value, attention_mask):
        size = key.size(-2)
        causal_mask = torch.tril(torch.ones((size, size), dtype=torch.bool, device=query.device))
        attention_mask = attention_mask.masked_fill(~causal_mask, torch.finfo(query.dtype).min)
        scores = (query @ key.transpose(-2, -1)) * query.size(-1) ** -0.5
        scores = scores.float()
        scores = scores + attention_mask
        return F.softmax(scores, dim=-1).to(value.dtype) @ value
"""


@pytest.mark.parametrize(
    ("assigned", "line"),
    [
        ("attention_mask = attention_mask.masked_fill(", 8),
        ("scores = scores.float()", 10),
    ],
)
def test_dropping_the_assignment_of_an_out_of_place_op_is_found(assigned, line):
    bare = assigned.split(" = ", 1)[1]
    mutant = ATTENTION.replace(assigned, bare)
    assert found(ATTENTION) == []
    assert [at for at, _ in found(mutant)] == [line]


def test_the_message_names_the_value_and_the_fix():
    mutant = ATTENTION.replace("scores = scores.float()", "scores.float()")
    ((_, message),) = found(mutant)
    assert "`scores.float(...)`" in message and "scores = scores.float(...)" in message


def test_a_module_moved_in_place_is_not_a_lost_result():
    source = """
        import torch
        from torch import nn

        def load(path, device):
            model = nn.Sequential(nn.Linear(4, 4))
            model.to(device)
            model.float()
            weights = torch.load(path)
            return model, weights
    """
    assert found(source) == []


def test_a_tensor_annotated_parameter_is_a_tensor():
    source = """
        import torch

        def prepare(x: torch.Tensor, device):
            x.to(device)
            return x
    """
    assert [at for at, _ in found(source)] == [5]


def test_a_discarded_balancing_apply_is_left_to_shp502():
    source = """
        import torch

        class MoEAuxLossAutoScaler(torch.autograd.Function):
            @staticmethod
            def forward(ctx, output, aux_loss):
                ctx.save_for_backward(aux_loss)
                return output

        def layer(output, aux_loss):
            MoEAuxLossAutoScaler.apply(output, aux_loss)
            return output
    """
    assert found(source) == []
    assert [d.line for d in findings("SHP502", source)] == [11]


def test_out_writes_the_result_in_place():
    source = """
        import torch

        def combine(a: torch.Tensor, b: torch.Tensor, buffer: torch.Tensor):
            torch.add(a, b, out=buffer)
            torch.cat((a, b), dim=0, out=buffer)
            a.mul(b, out=buffer)
            torch.cat((a, b), dim=0)
            return buffer
    """
    assert [at for at, _ in found(source)] == [8]


@pytest.mark.parametrize(
    "receiver",
    [
        "model",  # built from a module class of this file
        "self.encoder",  # an attribute holding one
        "typed",  # a parameter annotated with a project module type
        "self.decoder",  # built with nn.Linear(...).to(dtype)
    ],
)
@pytest.mark.parametrize("cast", ["half()", "cuda()", "to(device)", "float()", "bfloat16()"])
def test_a_module_cast_works_in_place(receiver, cast):
    source = f"""
        import torch
        from torch import nn

        class Block(nn.Module):
            pass

        class Net(Block):
            def __init__(self, dim):
                super().__init__()
                self.encoder = Block()
                self.decoder = nn.Linear(dim, dim).to(torch.float32)

            def prepare(self, typed: Net, device):
                model = Net(4)
                {receiver}.{cast}
                return model
    """
    assert found(source) == []


def test_methods_of_objects_that_are_not_tensors_are_not_tensor_ops():
    source = """
        import matplotlib.pyplot as plt
        import torch

        def plot(points, model: Classifier, observer):
            fig, ax = plt.subplots()
            ax.scatter(points[:, 0], points[:, 1])
            model.half()
            model.bfloat16()
            observer.scatter(points)
            observer.clamp(0, 1)
            hub = torch.hub.load("repo", "model")
            hub.half()
            return fig
    """
    assert found(source) == []


def test_shared_method_names_need_an_evident_tensor():
    source = """
        import torch

        def f(n, unknown):
            x = torch.zeros(n)
            x.softmax(-1)
            x.scatter(0, torch.zeros(n, dtype=torch.long), 1.0)
            unknown.softmax(-1)
            unknown.masked_fill(unknown > 0, 0.0)
            return x
    """
    assert [at for at, _ in found(source)] == [6, 7, 9]


def test_a_cast_after_contiguous_on_an_untyped_parameter_is_found():
    """DeepSpeed's transpose helper: `contiguous` only exists on tensors, so `data` is one and `.to()` is lost."""
    source = """
        def transpose(data):
            data = data.contiguous()
            data = data.reshape(data.shape[-1], data.shape[-2])
            data.to(get_accelerator().current_device_name())
            return data
    """
    assert [at for at, _ in found(source)] == [5]


def test_an_autograd_function_that_fills_a_list_it_is_given_is_called_for_that():
    source = """
        import torch

        class CheckpointFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, run_function, all_outputs, *args):
                outputs = run_function(*args)
                all_outputs += outputs
                return tuple(o.detach() for o in outputs)

        def checkpoint(function, *args):
            all_outputs = []
            CheckpointFunction.apply(function, all_outputs, *args)
            return all_outputs[0]
    """
    assert found(source) == []
    pure = source.replace("all_outputs += outputs", "pass")
    assert [at for at, _ in found(pure)] == [13]


@pytest.mark.parametrize(
    ("between", "rebinding", "passes"),
    [
        ("# attn is replaced below", "attn = self.dropout(dots)", True),
        ("y = g(attn=1, other=self.attn)", "attn = self.dropout(dots)", True),
        ("print(g(attn))", "attn = self.dropout(dots)", False),
        ("", "attn = self.dropout(attn)", False),
        ("", "return attn", False),
    ],
)
def test_the_screen_passes_a_result_bound_again_unread_and_only_that(between, rebinding, passes):
    """A file whose only candidate is `attn = <op>(...)` reaches the parser only when the name is bound
    again from something else before any line reads it: a comment, `self.attn` and a keyword `attn=`
    are not readings, and a file that reads `attn` first is skipped unparsed."""
    from detectors.discarded_op_result import DiscardedOpResult

    source = (
        "import torch\n\ndef f(self, q, k):\n    dots = torch.matmul(q, k)\n    attn = dots.softmax(dim=-1)\n"
        f"    {between}\n    {rebinding}\n    return attn\n"
    )
    assert DiscardedOpResult.may_match(source.lower().encode()) is passes
    assert [line for line, _ in found(source)] == ([5] if passes else [])


LOST_ATTENTION = """
    from torch import nn

    class Attention(nn.Module):
        def forward(self, x):
            return x

    class Transformer(nn.Module):
        def __init__(self, dim, depth):
            super().__init__()
            self.layers = nn.ModuleList([nn.ModuleList([Attention(), nn.Linear(dim, dim)]) for _ in range(depth)])

        def forward(self, x):
            caches = []
            for attn, ff in self.layers:
                residual = x
                attn_out, cache = attn(x)
                caches.append(cache)
                x = x + residual
                x = ff(x) + x
            return x, caches
"""


def test_a_module_output_nothing_reads_while_its_input_goes_on_is_lost():
    """audiolm-pytorch 2.0.6: the attention's output is bound and never read, and the layer adds the
    residual to its own input; 2.0.7 adds it to `attn_out`. The screen lets the file through."""
    from detectors.discarded_op_result import DiscardedOpResult

    assert DiscardedOpResult.may_match(LOST_ATTENTION.lower().encode())
    assert found(LOST_ATTENTION) == [(17, "nothing reads `attn_out` after this: the result of `attn(...)` is lost")]
    assert found(LOST_ATTENTION.replace("x = x + residual", "x = attn_out + residual")) == []


@pytest.mark.parametrize(
    "change",
    [
        ("attn_out, cache = attn(x)", "_out, cache = attn(x)"),  # discarded on purpose
        ("x = x + residual\n                x = ff(x) + x", "x = ff(attn_out) + residual\n                aux = ff(x)"),
        ("caches = []", "attn_out = None\n            caches = []"),  # unrelated: still lost below
    ],
)
def test_an_unread_module_output_is_lost_only_where_the_code_goes_on_without_it(change):
    source = LOST_ATTENTION.replace(change[0], change[1])
    expected = [18] if change[0] == "caches = []" else []
    assert [line for line, _ in found(source)] == expected


def test_an_output_read_on_the_next_pass_of_its_loop_or_as_another_element_is_not_lost():
    """`out` read at the top of the next iteration; PiT's `x, cls_tokens = self.transformers(...)` whose
    class token goes on (the first element is the one left unread)."""
    looped = LOST_ATTENTION.replace(
        "residual = x\n", "residual = x\n                x = out if caches else x\n"
    ).replace("attn_out, cache = attn(x)", "out, cache = attn(x)")
    assert found(looped) == []
    pit = LOST_ATTENTION.replace("caches.append(cache)", "caches.append(cache)\n                x = cache")
    assert found(pit) == []


def test_the_screen_does_not_take_a_nested_functions_parameter_for_a_reading():
    """`def size(attn_out): ...` after the lost output binds a parameter of that name and reads nothing:
    the detector still flags the output, so the byte screen must let the file through."""
    from detectors.discarded_op_result import DiscardedOpResult

    source = LOST_ATTENTION.replace(
        "return x, caches", "def size(attn_out, n=1):\n                return n\n\n            return x, caches"
    )
    assert DiscardedOpResult.may_match(source.lower().encode())
    assert [line for line, _ in found(source)] == [17]
