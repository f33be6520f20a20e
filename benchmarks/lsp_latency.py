"""Time from a `didChange` to the diagnostics the language server publishes for it, warm.

    python benchmarks/lsp_latency.py [--rounds 10] [--lines 1000] [--ignore SHP202]

Starts `sharpedges lsp` over stdio with pygls's LanguageClient, opens a model file of about
--lines lines built from examples/ (each example copied with its classes and functions renamed,
as one long module), waits for the first diagnostics, then edits a line in the middle --rounds
times, each time waiting for the diagnostics of that version. For comparison it also times the
same check in this process with no server in between (`check_buffer`, what each worker runs).
--ignore writes `ignore = [...]` into the project's pyproject.toml, to see what one rule costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def model_file(lines: int) -> str:
    """Copies of every example, their top-level names suffixed per copy, until `lines` lines."""
    parts: list[str] = []
    copy = 0
    while sum(part.count("\n") for part in parts) < lines:
        copy += 1
        for example in sorted(EXAMPLES.glob("*.py")):
            source = example.read_text(encoding="utf-8")
            for name in re.findall(r"^(?:class|def) (\w+)", source, re.MULTILINE):
                source = re.sub(rf"\b{name}\b", f"{name}{copy}", source)
            parts.append(source)
    return "\n".join(parts)


async def measure(text: str, rounds: int, root: Path) -> list[float]:
    client = LanguageClient("sharpedges-latency", "1")
    published: dict[int, asyncio.Event] = {}
    arrived_at: dict[int, float] = {}

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        if params.version is None:  # the server names the version it checked; the rounds wait on it
            return
        arrived_at[params.version] = time.perf_counter()
        published.setdefault(params.version, asyncio.Event()).set()

    await client.start_io(sys.executable, "-m", "sharpedges", "lsp", cwd=str(root))
    await client.initialize_async(
        types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=root.as_uri())
    )
    client.initialized(types.InitializedParams())
    uri = (root / "model.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    await asyncio.wait_for(published.setdefault(1, asyncio.Event()).wait(), 120)
    middle = text.count("\n") // 2
    timings = []
    for version in range(2, rounds + 2):
        start_of_line = types.Position(line=middle, character=0)
        edit = types.TextDocumentContentChangePartial(
            range=types.Range(start=start_of_line, end=start_of_line), text=f"# edit {version}\n"
        )
        published.setdefault(version, asyncio.Event())
        sent = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version), content_changes=[edit]
            )
        )
        await asyncio.wait_for(published[version].wait(), 120)
        timings.append(arrived_at[version] - sent)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return timings


def engine_only(text: str, rounds: int, root: Path) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each check (CPU time barely moves when other processes load the machine)."""
    from sharpedges.lsp.checking import check_buffer

    path = str(root / "model.py")
    check_buffer(path, text)
    wall, cpu = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        check_buffer(path, text)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def summary(label: str, timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    return f"{label}: median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms ({len(ms)} rounds)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--ignore", default="", help="rule codes to ignore, comma-separated")
    args = parser.parse_args()
    text = model_file(args.lines)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "model.py").write_text(text, encoding="utf-8")
        ignored = [code.strip() for code in args.ignore.split(",") if code.strip()]
        if ignored:
            (root / "pyproject.toml").write_text(f"[tool.sharpedges]\nignore = {ignored!r}\n".replace("'", '"'))
        from sharpedges.lsp.checking import check_buffer

        findings = len(check_buffer(str(root / "model.py"), text)["diagnostics"])
        print(f"model file: {text.count(chr(10)) + 1} lines from {EXAMPLES.name}/, {findings} findings")
        print(summary("didChange -> publishDiagnostics (server, warm)", asyncio.run(measure(text, args.rounds, root))))
        wall, cpu = engine_only(text, args.rounds, root)
        print(summary("the same check in-process, no server (engine only), wall", wall))
        print(summary("the same check in-process, no server (engine only), CPU", cpu))
        print(f"load average: {' '.join(f'{load:.2f}' for load in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
