"""`sharpedges serve` driven by the MCP SDK's real client session over stdio, as an agent would."""

import json
import os
import sys

import anyio
import pytest

pytest.importorskip("mcp", reason="the MCP server is the optional extra sharpedges[mcp]")

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

BAD = "import torch\n\n\ndef attend(q, k, v):\n    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v\n"
GOOD = ("import math\nimport torch\n\n\ndef attend(q, k, v):\n"
        "    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) @ v\n")
TOOLS = {"check_code", "check_paths", "explain_rule", "list_rules", "get_skill", "list_skills", "route",
         "kv_cache_bytes", "chinchilla"}


@pytest.fixture
def root(tmp_path):
    """root/ holds bad.py, notes.txt and links out: link.py to outside/secret.py, linkdir to outside/pkg."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "bad.py").write_text(BAD)
    (root / "notes.txt").write_text("not python\n")
    (outside / "secret.py").write_text(BAD)
    (outside / "pkg").mkdir()
    (outside / "pkg" / "other.py").write_text(BAD)
    (root / "link.py").symlink_to(outside / "secret.py")
    (root / "linkdir").symlink_to(outside / "pkg", target_is_directory=True)
    return root


def drive(root, scenario):
    """Start the server in `root` and run `scenario(session)` against it; returns its result."""
    env = {key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ}
    params = StdioServerParameters(command=sys.executable, args=["-m", "sharpedges", "serve", "--root", str(root)],
                                   cwd=str(root), env=env)

    async def main():
        with anyio.fail_after(120):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await scenario(session)

    return anyio.run(main)


def text_of(result) -> str:
    return " ".join(block.text for block in result.content if block.type == "text")


def test_tools_have_schemas_and_lint_code(root):
    async def scenario(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and tool.input_schema["type"] == "object"
            assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        assert tools["check_code"].input_schema["required"] == ["source"]

        bad = await session.call_tool("check_code", {"source": BAD, "filename": "model.py"})
        assert not bad.is_error
        [finding] = bad.structured_content["diagnostics"]
        assert (finding["rule"], finding["path"], finding["line"]) == ("SHP101", "model.py", 5)
        assert finding["explanation"]["reference_impl"] == "attention:attention_ref"
        assert finding["explanation"]["why"] and finding["explanation"]["use_instead"]
        good = await session.call_tool("check_code", {"source": GOOD})
        assert good.structured_content["diagnostics"] == [] and good.structured_content["summary"]["files"] == 1
        not_python = await session.call_tool("check_code", {"source": GOOD, "filename": "notes.md"})
        assert not_python.is_error and "not a Python file name" in text_of(not_python)
        missing_arg = await session.call_tool("check_code", {})
        assert missing_arg.is_error and "source" in text_of(missing_arg)

        explained = await session.call_tool("explain_rule", {"code": "shp101"})
        assert explained.structured_content["code"] == "SHP101"
        assert explained.structured_content["sharp_edge"]["why"]
        unknown = await session.call_tool("explain_rule", {"code": "SHP999"})
        assert unknown.is_error and "unknown rule 'SHP999'" in text_of(unknown)
        rules = (await session.call_tool("list_rules", {})).structured_content["rules"]
        assert {"code": "SHP101", "name": "attention-missing-scale"}.items() <= rules[0].items()

    drive(root, scenario)


def test_check_paths_reads_only_inside_the_root(root):
    async def scenario(session):
        async def check(paths):
            return await session.call_tool("check_paths", {"paths": paths})

        inside = await check(["bad.py"])
        assert [(d["path"], d["line"]) for d in inside.structured_content["diagnostics"]] == [(str(root / "bad.py"), 5)]
        refusals = {
            "../outside/secret.py": "resolves outside the server's roots",
            str(root.parent / "outside" / "secret.py"): "resolves outside the server's roots",
            "link.py": "resolves through a symlink outside",
            "linkdir/other.py": "resolves through a symlink outside",
            "linkdir": "resolves through a symlink outside",
            "notes.txt": "not a Python file",
            "nothing.py": "no such file or directory",
        }
        for path, message in refusals.items():
            result = await check([path])
            assert result.is_error and message in text_of(result), (path, text_of(result))
            assert "import torch" not in text_of(result)
        empty = await check([])
        assert empty.is_error and "at least one path" in text_of(empty)

        # Walking the root finds bad.py and refuses what the links lead to, without reading it.
        walked = (await check(["."])).structured_content
        assert [d["path"] for d in walked["diagnostics"]] == [str(root / "bad.py")]
        refused = sorted(e["path"] for e in walked["errors"])
        assert refused == [str(root / "link.py"), str(root / "linkdir" / "other.py")]
        assert all("outside the server's roots, not read" in e["message"] for e in walked["errors"])

    drive(root, scenario)


def test_skills_routing_and_calculators(root, run_cli):
    route_request = "my KV cache grows without bound during generation"
    cli_route = json.loads(run_cli("route", "--format", "json", route_request).stdout)

    async def scenario(session):
        skills = (await session.call_tool("list_skills", {})).structured_content["skills"]
        ids = [skill["id"] for skill in skills]
        assert "transformer-architecture" in ids
        whole = (await session.call_tool("get_skill", {"id": "transformer-architecture"})).structured_content
        assert whole["markdown"].startswith("#") and whole["section"] is None
        part = (await session.call_tool("get_skill", {"id": "transformer-architecture", "section": "sharp-edges"}))
        assert part.structured_content["markdown"] and part.structured_content["markdown"] in whole["markdown"]
        for arguments, message in (({"id": "no-such-skill"}, "unknown skill 'no-such-skill'"),
                                   ({"id": "transformer-architecture", "section": "nope"}, "unknown section 'nope'")):
            result = await session.call_tool("get_skill", arguments)
            assert result.is_error and message in text_of(result)

        routed = (await session.call_tool("route", {"request": route_request})).structured_content
        assert routed == cli_route

        kv = await session.call_tool("kv_cache_bytes", {"layers": 32, "kv_heads": 32, "head_dim": 128})
        assert kv.structured_content == {"bytes": 524288, "bytes_per_token": 524288.0,
                                         "human": "512 KiB (512 KiB per token)"}
        scaling = (await session.call_tool("chinchilla", {"params": 7e9})).structured_content
        assert (scaling["params"], scaling["tokens"], scaling["flops"]) == (7e9, 1.4e11, 5.88e21)
        for name, arguments, message in (("chinchilla", {}, "exactly one of params, tokens or flops"),
                                         ("kv_cache_bytes", {"layers": 0, "kv_heads": 1, "head_dim": 1},
                                          "layers must be a positive integer"),
                                         ("kv_cache_bytes", {"layers": "many", "kv_heads": 1, "head_dim": 1}, "layers"),
                                         ("kv_cache_bytes", {"layers": 1, "kv_heads": 1, "head_dim": 1, "dtype": "fp12"},
                                          "unknown dtype 'fp12'")):
            result = await session.call_tool(name, arguments)
            assert result.is_error and message in text_of(result), text_of(result)

        resources = (await session.list_resources()).resources
        assert sorted(str(r.uri) for r in resources) == sorted(f"skill://{i}" for i in ids)
        read = await session.read_resource("skill://transformer-architecture")
        assert read.contents[0].text == whole["markdown"] and read.contents[0].mime_type == "text/markdown"
        prompts = (await session.list_prompts()).prompts
        assert sorted(p.name for p in prompts) == sorted(ids) and all(not p.arguments for p in prompts)
        prompt = await session.get_prompt("transformer-architecture")
        assert prompt.messages[0].content.text == whole["markdown"]

    drive(root, scenario)


def test_serve_refuses_a_root_that_is_not_a_directory(tmp_path, run_cli):
    result = run_cli("serve", "--root", str(tmp_path / "missing"))
    assert result.returncode == 2 and "--root is not a directory" in result.stderr
