"""`sharpedges lsp` driven over stdio by pygls's LanguageClient, as an editor would drive it."""

import asyncio
import os
import sys
from contextlib import asynccontextmanager

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.workspace import PositionCodec, TextDocument

from sharpedges.diagnostics import DiagnosticFix, Edit
from sharpedges.fixes import apply_edits
from sharpedges.lines import source_lines
from sharpedges.lsp.translate import FIX_ALL_KIND, checked_text, fix_all_action, fixed_text

SOURCE = """\
import math
import torch


def attention(query, key, value, mask=None):
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    p_attn = scores.softmax(dim=-1)
    return torch.matmul(p_attn, value), p_attn


def attend(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
"""
FILL_LINE, SOFTMAX_LINE = 8, 14  # 0-based lines of the SHP103 and SHP101 findings
WAIT = 60  # seconds; generous for a loaded machine, never reached when the server works

# Loaded by the server and by each worker it spawns (through PYTHONPATH): SHP101's detector crashes,
# kills its process, takes a while or hangs on a file that asks it to.
SABOTAGE = """\
import os, time
from sharpedges.registry import all_rules

detector = all_rules()["SHP101"].detector
original = detector.check

def check(self, ctx):
    code = ctx.module.code
    if "CRASH_ME" in code:
        raise RuntimeError("sabotaged")
    if "EXIT_ME" in code:
        os._exit(3)
    if "SLOW_ME" in code:
        time.sleep(2)
    if "HANG_ME" in code:
        time.sleep(600)
    return original(self, ctx)

detector.check = check
"""


class Editor:
    """A client that records what the server publishes and logs."""

    def __init__(self, client: LanguageClient, root) -> None:
        self.client, self.root = client, root
        self.published: dict[str, list[types.PublishDiagnosticsParams]] = {}
        self.logs: list[str] = []
        self.arrived = asyncio.Condition()
        self.buffers: dict[str, TextDocument] = {}  # the editor's side of the text sync

    async def diagnostics(self, uri: str, version: int | None = None) -> list[types.Diagnostic]:
        """The first diagnostics published for `uri` at `version` (any version when None)."""

        def ready():
            return next((p for p in self.published.get(uri, []) if version is None or p.version == version), None)

        async with self.arrived:
            found = await asyncio.wait_for(self.arrived.wait_for(ready), WAIT)
        return list(found.diagnostics)

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str, language: str = "python") -> str:
        uri = self.uri(name)
        self.buffers[uri] = TextDocument(uri, text, version=1)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
            )
        )
        return uri

    def change(self, uri: str, text: str, where: types.Range | None = None) -> int:
        """Replace `where` (the whole document when None) with `text`; returns the new version."""
        buffer = self.buffers[uri]
        buffer.version += 1
        change = (
            types.TextDocumentContentChangeWholeDocument(text=text)
            if where is None
            else types.TextDocumentContentChangePartial(range=where, text=text)
        )
        buffer.apply_change(change)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=buffer.version),
                content_changes=[change],
            )
        )
        return buffer.version

    async def actions(self, uri: str, line: int, only: list[str] | None = None) -> list[types.CodeAction]:
        where = types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line, character=0))
        return await asyncio.wait_for(
            self.client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=where,
                    context=types.CodeActionContext(diagnostics=[], only=only),
                )
            ),
            WAIT,
        )

    def apply(self, uri: str, action: types.CodeAction) -> int:
        """Send the action's edits back as the change an editor makes (last edit first)."""
        edits = sorted(
            action.edit.changes[uri], key=lambda e: (e.range.start.line, e.range.start.character), reverse=True
        )
        for edit in edits:
            version = self.change(uri, edit.new_text, edit.range)
        return version

    def text(self, uri: str) -> str:
        """The buffer after the changes sent (the server holds the same text)."""
        return self.buffers[uri].source


@asynccontextmanager
async def running(root, sabotage=False):
    """The real server (`python -m sharpedges lsp`) in `root`, initialised; shut down and exited after.
    With `sabotage`, its SHP101 detector misbehaves on request (see SABOTAGE)."""
    client = LanguageClient("sharpedges-tests", "1")
    editor = Editor(client, root)

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    async def published(params: types.PublishDiagnosticsParams) -> None:
        async with editor.arrived:
            editor.published.setdefault(params.uri, []).append(params)
            editor.arrived.notify_all()

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def logged(params: types.LogMessageParams) -> None:
        editor.logs.append(params.message)

    env = dict(os.environ)
    if sabotage:
        (root / "sabotage").mkdir()
        (root / "sabotage" / "sitecustomize.py").write_text(SABOTAGE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "sabotage"), env.get("PYTHONPATH")]))
    await client.start_io(sys.executable, "-m", "sharpedges", "lsp", cwd=str(root), env=env)
    result = await asyncio.wait_for(
        client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="project")],
            )
        ),
        WAIT,
    )
    assert result.server_info.name == "sharpedges"
    client.initialized(types.InitializedParams())
    try:
        yield editor
    finally:
        await asyncio.wait_for(client.shutdown_async(None), WAIT)
        client.exit(None)
        await asyncio.wait_for(client.stop(), WAIT)
    assert client._server.returncode == 0


def drive(root, scenario, sabotage=False):
    async def main():
        async with running(root, sabotage) as editor:
            return await scenario(editor)

    return asyncio.run(main())


def test_open_change_fix_hover_and_clean_shutdown(tmp_path):
    async def scenario(editor: Editor):
        uri = editor.open("model.py", SOURCE)
        found = await editor.diagnostics(uri, 1)
        assert [(d.code, d.range.start.line, d.range.start.character, d.range.end.character) for d in found] == [
            ("SHP103", FILL_LINE, 47, 51),
            ("SHP101", SOFTMAX_LINE, 11, 57),
        ]
        fill = found[0]
        assert fill.source == "sharpedges" and fill.severity == types.DiagnosticSeverity.Error
        assert fill.message.startswith("mask fill value -1e+09 is beyond the float16 range")
        assert fill.code_description.href.endswith("/SHP103.yaml")

        # The safe fix is offered and preferred; the noqa beside it; fix-all offers it too.
        actions = await editor.actions(uri, FILL_LINE)
        fix, noqa, *_ = actions
        assert [a.title for a in actions] == [
            "Fix SHP103 (mask-fill-overflows-half)",
            "Suppress SHP103 on this line (# noqa)",
            "Fix all safe sharpedges problems in this file",
        ]
        assert fix.kind == types.CodeActionKind.QuickFix and fix.is_preferred
        assert noqa.title == "Suppress SHP103 on this line (# noqa)"
        (fix_all,) = await editor.actions(uri, FILL_LINE, only=[FIX_ALL_KIND])
        assert fix_all.title == "Fix all safe sharpedges problems in this file"

        version = editor.apply(uri, fix)
        after_fix = await editor.diagnostics(uri, version)
        assert [d.code for d in after_fix] == ["SHP101"]
        assert "scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)" in editor.text(uri)

        # The rule's doc, its sharp edge and the reference implementation on hover.
        hover = await editor.client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=SOFTMAX_LINE, character=20),
            )
        )
        text = hover.contents.value
        assert hover.contents.kind == types.MarkupKind.Markdown
        for heading in (
            "# SHP101 attention-missing-scale",
            "## What it does",
            "## Why is this bad?",
            "## Use instead",
            "## Reference implementation",
            "## Sharp edge: ",
            "### Why",
            "### Symptoms",
        ):
            assert heading in text
        assert "reference_impls/attention.py:" in text
        assert (
            await editor.client.text_document_hover_async(
                types.HoverParams(
                    text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=0)
                )
            )
            is None
        )

        # Suppress the other finding with the noqa action; the file is then clean.
        [noqa] = [a for a in await editor.actions(uri, SOFTMAX_LINE) if "noqa" in a.title]
        version = editor.apply(uri, noqa)
        assert await editor.diagnostics(uri, version) == []
        assert "return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v  # noqa: SHP101\n" in editor.text(uri)

        # Arithmetic after the fill makes the same fix unsafe: titled as such, not preferred, not in fix-all.
        biased = editor.open("biased.py", SOURCE.replace("    p_attn = ", "    scores = scores + 1.0\n    p_attn = "))
        await editor.diagnostics(biased, 1)
        fix, _noqa = await editor.actions(biased, FILL_LINE)
        assert fix.title == "Fix SHP103 (mask-fill-overflows-half), unsafe: changes numerics, review it"
        assert not fix.is_preferred
        assert not await editor.actions(biased, FILL_LINE, only=[FIX_ALL_KIND])
        return editor

    editor = drive(tmp_path, scenario)
    assert editor.logs == []


def test_diagnostics_follow_the_buffer_not_the_disk_and_close_clears(tmp_path):
    (tmp_path / "model.py").write_text("x = 1\n")  # what is on disk never matters

    async def scenario(editor: Editor):
        uri = editor.open("model.py", "import torch\n")
        assert await editor.diagnostics(uri, 1) == []
        version = editor.change(uri, SOURCE)
        assert [d.code for d in await editor.diagnostics(uri, version)] == ["SHP103", "SHP101"]
        # A finding already suppressed is joined, not duplicated, by the noqa action.
        version = editor.change(uri, SOURCE.replace("-1e9)", "-1e9)  # noqa: SHP101"))
        assert [d.code for d in await editor.diagnostics(uri, version)] == ["SHP103", "SHP101"]
        noqa = next(a for a in await editor.actions(uri, FILL_LINE) if "noqa" in a.title)
        assert [e.new_text for e in noqa.edit.changes[uri]] == [", SHP103"]
        editor.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        async with editor.arrived:
            await asyncio.wait_for(
                editor.arrived.wait_for(
                    lambda: not editor.published[uri][-1].diagnostics and editor.published[uri][-1].version is None
                ),
                WAIT,
            )

    drive(tmp_path, scenario)


def test_syntax_error_and_undecodable_buffer_are_diagnostics_and_the_server_lives_on(tmp_path):
    async def scenario(editor: Editor):
        broken = editor.open("broken.py", "import torch\n\ndef attend(q, k:\n    return torch.softmax(q @ k.T, -1)\n")
        [problem] = await editor.diagnostics(broken, 1)
        assert problem.code == "SHP000" and problem.source == "sharpedges"
        assert problem.message == "sharpedges could not check this file: syntax error at 3:11: '(' was never closed"
        assert (problem.range.start.line, problem.range.start.character) == (2, 10)  # at the bracket left open

        codec = editor.open(
            "codec.py", "# -*- coding: no-such-codec -*-\nimport torch\nx = torch.softmax(q @ k.T, -1)\n"
        )
        [problem] = await editor.diagnostics(codec, 1)
        assert problem.code == "SHP000" and "unknown encoding: no-such-codec" in problem.message

        surrogate = editor.open("surrogate.py", "import torch\nnote = '\ud800'\n")  # JSON allows a lone surrogate
        [problem] = await editor.diagnostics(surrogate, 1)
        assert problem.code == "SHP000"
        assert "cannot decode: the buffer is not valid Unicode (surrogates not allowed at offset 21)" in problem.message

        # The same server still checks the next file.
        uri = editor.open("model.py", SOURCE)
        assert [d.code for d in await editor.diagnostics(uri, 1)] == ["SHP103", "SHP101"]

    drive(tmp_path, scenario)


def test_a_crashing_detector_a_dying_worker_and_a_hung_file_never_stop_the_server(tmp_path):
    async def scenario(editor: Editor):
        crash = editor.open("crash.py", SOURCE + "# CRASH_ME\n")
        found = await editor.diagnostics(crash, 1)
        # The other rules still report; the crash is a diagnostic and a log line.
        assert [d.code for d in found] == ["SHP000", "SHP103"]
        assert found[0].message == ("sharpedges could not check this file: SHP101 crashed: RuntimeError: sabotaged")
        assert any("SHP101 crashed" in line and "please report this" in line for line in editor.logs)

        dying = editor.open("dying.py", SOURCE + "# EXIT_ME\n")
        [problem] = await editor.diagnostics(dying, 1)
        assert problem.code == "SHP000" and "the checking process died on this file (twice)" in problem.message

        # Changed while its check runs: that check's results are dropped and the newest text checked.
        slow = editor.open("slow.py", SOURCE + "# SLOW_ME\n")
        version = editor.change(slow, SOURCE.replace("-1e9", "-1e4"))
        assert [d.code for d in await editor.diagnostics(slow, version)] == ["SHP101"]

        hung = editor.open("hung.py", SOURCE + "# HANG_ME\n")
        model = editor.open("model.py", SOURCE)
        # The hung file holds one worker; the next file is checked and answered meanwhile.
        assert [d.code for d in await editor.diagnostics(model, 1)] == ["SHP103", "SHP101"]
        hover = await editor.client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=model),
                position=types.Position(line=SOFTMAX_LINE, character=20),
            )
        )
        assert hover.contents.value.startswith("# SHP101 attention-missing-scale")
        assert hung not in editor.published  # still running: shutdown must not wait for it

    drive(tmp_path, scenario, sabotage=True)


def test_workspace_config_selects_and_excludes_as_the_cli_does(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sharpedges]\nignore = ["SHP103"]\nextend-exclude = ["generated/"]\n\n'
        '[tool.sharpedges.per-file-ignores]\n"legacy_*.py" = ["SHP101"]\n'
    )
    (tmp_path / "generated").mkdir()
    for name in ("model.py", "legacy_model.py", "generated/model.py"):
        (tmp_path / name).write_text(SOURCE)

    async def scenario(editor: Editor):
        model, legacy, generated = (
            editor.open(name, SOURCE) for name in ("model.py", "legacy_model.py", "generated/model.py")
        )
        assert [d.code for d in await editor.diagnostics(model, 1)] == ["SHP101"]
        assert await editor.diagnostics(legacy, 1) == []
        assert await editor.diagnostics(generated, 1) == []

    drive(tmp_path, scenario)


def test_a_config_change_applies_to_open_files(tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.sharpedges]\n")

    async def scenario(editor: Editor):
        settings = editor.open("pyproject.toml", config.read_text(), language="toml")  # not Python: not checked
        uri = editor.open("model.py", SOURCE)
        assert [d.code for d in await editor.diagnostics(uri, 1)] == ["SHP103", "SHP101"]
        assert settings not in editor.published
        # Edited on disk, not announced: the next check reads it.
        config.write_text('[tool.sharpedges]\nignore = ["SHP101"]\n')
        version = editor.change(uri, SOURCE + "\n")
        assert [d.code for d in await editor.diagnostics(uri, version)] == ["SHP103"]
        # A new config nearer the file, announced as a watched-file change: open files are checked again.
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "pyproject.toml").write_text('[tool.sharpedges]\nignore = ["SHP103"]\n')
        inner = editor.open("pkg/model.py", SOURCE)
        assert [d.code for d in await editor.diagnostics(inner, 1)] == ["SHP101"]
        (tmp_path / "pkg" / "pyproject.toml").write_text('[tool.sharpedges]\nselect = ["SHP2"]\n')
        published = len(editor.published[inner])
        editor.client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[
                    types.FileEvent(
                        uri=(tmp_path / "pkg" / "pyproject.toml").as_uri(), type=types.FileChangeType.Changed
                    )
                ]
            )
        )
        async with editor.arrived:
            await asyncio.wait_for(editor.arrived.wait_for(lambda: len(editor.published[inner]) > published), WAIT)
        assert not editor.published[inner][-1].diagnostics

    drive(tmp_path, scenario)


def test_an_invalid_config_is_reported_on_the_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.sharpedges]\nselct = ["SHP1"]\n')

    async def scenario(editor: Editor):
        [problem] = await editor.diagnostics(editor.open("model.py", SOURCE), 1)
        assert problem.code == "SHP000"
        assert "configuration error" in problem.message and "unknown key 'selct'" in problem.message

    drive(tmp_path, scenario)


def test_fix_all_applies_every_safe_fix_and_keeps_the_unsafe_ones_out():
    """No rule has a safe fix yet, so the fix-all edit is checked on engine results that carry
    safe and unsafe fixes."""
    text = "a = 1\nb = 2\nc = 3\n"

    def fix(line, applicability, content):
        edit = {"line": line, "column": 5, "end_line": line, "end_column": 6, "content": content, "original": str(line)}
        return {
            "rule": "SHP999",
            "name": "example",
            "severity": "warning",
            "path": "m.py",
            "line": line,
            "column": 5,
            "end_line": line,
            "end_column": 6,
            "message": "m",
            "help": "sharpedges rule SHP999",
            "fix": {"applicability": applicability, "edits": [edit]},
        }

    result = {
        "excluded": False,
        "errors": [],
        "diagnostics": [fix(1, "safe", "10"), fix(2, "unsafe", "20"), fix(3, "safe", "30")],
    }
    checked = checked_text("file:///m.py", 1, text, PositionCodec(), result)
    fixed = fixed_text(checked)
    assert fixed == "a = 10\nb = 2\nc = 30\n"
    action = fix_all_action(checked, fixed)
    assert action.kind == FIX_ALL_KIND
    [edit] = action.edit.changes["file:///m.py"]
    assert (edit.range.start.line, edit.range.start.character, edit.range.end.line, edit.range.end.character) == (
        0,
        0,
        len(source_lines(text)),
        0,
    )
    whole_file = Edit(1, 1, 4, 1, edit.new_text, original=text)
    assert apply_edits(text, [DiagnosticFix("safe", (whole_file,))]).text == fixed


def test_columns_follow_the_clients_position_encoding():
    """The engine counts code points; the client may count UTF-16 (the default) or UTF-8 units."""
    text = 'note = "😋é"; s = torch.softmax(q @ k.T, -1)\n'
    column = text.index("torch") + 1
    finding = {
        "rule": "SHP101",
        "name": "attention-missing-scale",
        "severity": "error",
        "path": "m.py",
        "line": 1,
        "column": column,
        "end_line": 1,
        "end_column": len(text),
        "message": "m",
        "help": "sharpedges rule SHP101",
        "fix": None,
    }
    result = {"excluded": False, "errors": [], "diagnostics": [finding]}
    encodings = (types.PositionEncodingKind.Utf32, types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf8)
    starts = [
        checked_text("file:///m.py", 1, text, PositionCodec(encoding), result).findings[0].lsp.range.start
        for encoding in encodings
    ]
    assert [start.character for start in starts] == [column - 1, column, column + 3]


def test_the_locations_a_finding_rests_on_become_related_information(tmp_path):
    (tmp_path / "masks.py").write_text("import torch\n\n\ndef causal(n):\n    return torch.triu(torch.ones(n, n))\n")
    text = "import torch\n\nmask = torch.triu(torch.ones(4, 4))\nscores = scores.masked_fill(mask == 0, -1e4)\n"
    built_here = {"line": 3, "column": 8, "end_line": 3, "end_column": 36, "message": "the mask is built here"}
    elsewhere = {
        "line": 5,
        "column": 12,
        "end_line": 5,
        "end_column": 40,
        "message": "and here",
        "path": str(tmp_path / "masks.py"),
    }
    finding = {
        "rule": "SHP202",
        "name": "causal-mask-inverted",
        "severity": "error",
        "path": str(tmp_path / "m.py"),
        "line": 4,
        "column": 10,
        "end_line": 4,
        "end_column": 45,
        "message": "m",
        "help": "sharpedges rule SHP202",
        "fix": None,
        "related": [built_here, elsewhere],
    }
    uri = (tmp_path / "m.py").as_uri()
    checked = checked_text(uri, 1, text, PositionCodec(), {"excluded": False, "errors": [], "diagnostics": [finding]})
    related = checked.findings[0].lsp.related_information
    assert [
        (
            r.location.uri,
            r.location.range.start.line,
            r.location.range.start.character,
            r.location.range.end.character,
            r.message,
        )
        for r in related
    ] == [(uri, 2, 7, 35, "the mask is built here"), ((tmp_path / "masks.py").as_uri(), 4, 11, 39, "and here")]
