"""The MCP `probe` tool through the SDK's real client: it probes a model inside the server's root and
refuses a module outside it, as `check_paths` refuses paths."""

import shutil
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the MCP server is the optional extra sharpedges[mcp]")

from tests.faces.test_mcp import drive, text_of

TARGETS = "from models import TinyLM\n\n\ndef inverted():\n    return TinyLM('inverted_causal_mask')\n"


def test_probe_tool_runs_inside_the_root_and_refuses_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copy(Path(__file__).with_name("models.py"), root / "models.py")
    (root / "targets.py").write_text(TARGETS)
    (outside / "elsewhere.py").write_text(TARGETS)
    (root / "linked.py").symlink_to(outside / "elsewhere.py")

    async def scenario(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert tools["probe"].input_schema["required"] == ["target"]
        assert tools["probe"].input_schema["properties"]["device"]["enum"] == ["cpu", "cuda"]
        found = await session.call_tool("probe", {"target": "targets:inverted", "probes": ["causal", "grad-flow"]})
        assert not found.is_error, text_of(found)
        [causal, grad_flow] = found.structured_content["probes"]
        assert (causal["name"], causal["status"], causal["rule"]) == ("causal", "fail", "SHP201/SHP202")
        assert causal["measured"]["first_leaking_position"] == 0
        assert (grad_flow["name"], grad_flow["status"]) == ("grad-flow", "pass")
        linked = await session.call_tool("probe", {"target": "linked:inverted"})
        assert linked.is_error and "resolves through a symlink outside" in text_of(linked)
        stdlib = await session.call_tool("probe", {"target": "os:getcwd"})
        assert stdlib.is_error and "'os': refused" in text_of(stdlib)
        unknown = await session.call_tool("probe", {"target": "targets:inverted", "probes": ["causality"]})
        assert unknown.is_error and "unknown probe 'causality'" in text_of(unknown)

    drive(root, scenario)
