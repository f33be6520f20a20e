"""`sharpedges serve` driven by the MCP SDK's real client session over stdio, as an agent would."""

import json
import os
import sys

import anyio
import pytest

pytest.importorskip("mcp", reason="the MCP server is the optional extra sharpedges[mcp]")

from mcp import ClientSession, StdioServerParameters, stdio_client

BAD = "import torch\n\n\ndef attend(q, k, v):\n    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v\n"
GOOD = (
    "import math\nimport torch\n\n\ndef attend(q, k, v):\n"
    "    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) @ v\n"
)
TOOLS = {
    "check_code",
    "check_paths",
    "explain_rule",
    "list_rules",
    "get_skill",
    "list_skills",
    "route",
    "kv_cache_bytes",
    "chinchilla",
    "probe",
}


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
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "sharpedges", "serve", "--root", str(root)], cwd=str(root), env=env
    )

    async def main():
        with anyio.fail_after(120):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
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

        # Walking the root finds bad.py and refuses the links out, without entering or naming
        # what lies behind them.
        walked = (await check(["."])).structured_content
        assert [d["path"] for d in walked["diagnostics"]] == [str(root / "bad.py")]
        refused = sorted(e["path"] for e in walked["errors"])
        assert refused == [str(root / "link.py"), str(root / "linkdir")]
        assert all("outside the server's roots, not read" in e["message"] for e in walked["errors"])
        assert "other.py" not in json.dumps(walked) and "secret" not in json.dumps(walked)

        # The same path many times, and many ways, is checked once.
        repeated = (await check(["bad.py"] * 2000 + [str(root / "bad.py"), "./bad.py"])).structured_content
        assert len(repeated["diagnostics"]) == 1 and repeated["summary"]["files"] == 1

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
        part = await session.call_tool("get_skill", {"id": "transformer-architecture", "section": "sharp-edges"})
        assert part.structured_content["markdown"] and part.structured_content["markdown"] in whole["markdown"]
        for arguments, message in (
            ({"id": "no-such-skill"}, "unknown skill 'no-such-skill'"),
            ({"id": "transformer-architecture", "section": "nope"}, "unknown section 'nope'"),
        ):
            result = await session.call_tool("get_skill", arguments)
            assert result.is_error and message in text_of(result)

        routed = (await session.call_tool("route", {"request": route_request})).structured_content
        assert routed == cli_route

        kv = await session.call_tool("kv_cache_bytes", {"layers": 32, "kv_heads": 32, "head_dim": 128})
        assert kv.structured_content == {
            "bytes": 524288,
            "bytes_per_token": 524288.0,
            "human": "512 KiB (512 KiB per token)",
        }
        scaling = (await session.call_tool("chinchilla", {"params": 7e9})).structured_content
        assert (scaling["params"], scaling["tokens"], scaling["flops"]) == (7e9, 1.4e11, 5.88e21)
        for name, arguments, message in (
            ("chinchilla", {}, "exactly one of params, tokens or flops"),
            ("kv_cache_bytes", {"layers": 0, "kv_heads": 1, "head_dim": 1}, "layers must be a positive integer"),
            ("kv_cache_bytes", {"layers": "many", "kv_heads": 1, "head_dim": 1}, "layers"),
            ("kv_cache_bytes", {"layers": 1, "kv_heads": 1, "head_dim": 1, "dtype": "fp12"}, "unknown dtype 'fp12'"),
        ):
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


def test_abuse_gets_clear_refusals(root):
    """The attack run's inputs: names reaching outside, NUL bytes, numbers that overflow, a huge request."""
    (root.parent / "outside" / "pyproject.toml").write_text('[tool.sharpedges]\nignore = ["SHP101"]\n')

    async def scenario(session):
        for filename in ("../outside/m.py", str(root.parent / "outside" / "m.py"), "a\0b.py"):
            result = await session.call_tool("check_code", {"source": BAD, "filename": filename})
            assert result.is_error and "refused: give a relative file name inside the root" in text_of(result)
        nul = await session.call_tool("check_paths", {"paths": ["bad\0.py"]})
        assert nul.is_error and "a path cannot contain a NUL byte" in text_of(nul)
        huge = await session.call_tool("chinchilla", {"params": 1e308})
        assert huge.is_error and "overflows" in text_of(huge)
        written = (await session.call_tool("chinchilla", {"params": "7B"})).structured_content
        assert written["tokens"] == 1.4e11
        sized = (
            await session.call_tool(
                "kv_cache_bytes", {"layers": "32", "kv_heads": 8, "head_dim": 128, "seq_len": "128k"}
            )
        ).structured_content
        assert sized["bytes"] == 2 * 32 * 8 * 128 * 2 * 128_000
        long_request = await session.call_tool("route", {"request": "attention " * 40_000})
        assert long_request.is_error and "request too long" in text_of(long_request)
        # Still answering, and the config outside the root was never applied.
        found = await session.call_tool("check_code", {"source": BAD, "filename": "inner/m.py"})
        assert [d["rule"] for d in found.structured_content["diagnostics"]] == ["SHP101"]

    drive(root, scenario)


def test_a_symlink_swapped_while_reading_never_yields_outside_bytes(tmp_path):
    import threading

    from sharpedges.serve import PathGuard

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "inside.py").write_text("INSIDE = 1\n")
    (outside / "secret.py").write_text("SECRET = 1\n")
    link = root / "flip.py"
    link.symlink_to(root / "inside.py")
    guard = PathGuard([root])
    stop = threading.Event()

    def flip():
        targets = [outside / "secret.py", root / "inside.py"]
        index = 0
        while not stop.is_set():
            temporary = root / ".flip.tmp"
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(targets[index % 2])
            os.replace(temporary, link)
            index += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    outcomes = set()
    try:
        for _ in range(300):
            try:
                outcomes.add(guard.read(str(link), 1 << 20))
            except OSError as exc:
                outcomes.add(str(exc))
    finally:
        stop.set()
        flipper.join()
    assert b"SECRET = 1\n" not in outcomes
    assert outcomes <= {
        b"INSIDE = 1\n",
        "refused: resolves through a symlink outside the server's roots, not read",
        "cannot read: no such file or directory",
    }


def test_checks_are_capped_and_time_limited_off_the_event_loop():
    import threading

    from mcp.server.mcpserver.exceptions import ToolError

    from sharpedges.serve import CallLimits

    release = threading.Event()

    async def main():
        limits = CallLimits(concurrent=1, seconds=30)
        async with anyio.create_task_group() as group:
            group.start_soon(limits.run, lambda: release.wait(30))
            while limits.running < 1:
                await anyio.sleep(0.01)
            with pytest.raises(ToolError, match="busy: 1 checks are running"):
                await limits.run(lambda: None)
            assert await anyio.to_thread.run_sync(lambda: 1 + 1) == 2  # the loop still answers
            release.set()
        slow = CallLimits(concurrent=1, seconds=0.2)
        with pytest.raises(ToolError, match=r"took longer than 0\.2 s"):
            await slow.run(lambda: threading.Event().wait(2))

    anyio.run(main)


def test_a_fifo_named_gitignore_does_not_hang_discovery(tmp_path, run_cli):
    (tmp_path / "pkg").mkdir()
    os.mkfifo(tmp_path / "pkg" / ".gitignore")
    (tmp_path / "pkg" / "bad.py").write_text(BAD)
    result = run_cli("check", "--no-cache", "--select", "SHP101", ".")
    assert result.returncode == 1 and "pkg/bad.py:5" in result.stdout
