"""The language server: buffers in; diagnostics, code actions and hovers out.

A buffer is checked on open and save, and after a pause in typing, from its text in memory.
Checks run in worker processes, one at a time per document: a change that arrives while its
document is being checked waits for that check, whose results are then dropped, and the newest
text is checked next. Code actions and hovers answer from the last published results.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from lsprotocol import types
from pygls import uris
from pygls.lsp.server import LanguageServer

from sharpedges import __version__
from sharpedges.discovery import PYTHON_SUFFIXES
from sharpedges.lsp import translate
from sharpedges.lsp.workers import CheckFailed, CheckWorkers

# A pause in typing this long starts a check. Typed keys come some 100 ms apart; what arrives
# closer is one edit sent in parts (a paste, a multi-cursor edit, a formatter), checked once. A
# change during a check waits for it and the newest text is checked next, so typing never queues.
DEBOUNCE_SECONDS = 0.02
CONFIG_FILE = "pyproject.toml"
UNSAVED_NAME = "untitled.py"  # a buffer with no file: checked under the workspace's config

logger = logging.getLogger(__name__)


class SharpedgesServer(LanguageServer):
    def __init__(self, workers: int = 2) -> None:
        super().__init__("sharpedges", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.workers = CheckWorkers(workers)
        self.checked: dict[str, translate.CheckedText] = {}  # uri -> last published results
        self.fixed: dict[str, tuple[int | None, str | None]] = {}  # uri -> (version, text with safe fixes)
        self.scheduled: dict[str, asyncio.Task] = {}
        self.checking: set[str] = set()  # documents with a check in a worker now
        self.reported: set[str] = set()  # crash reports already logged, so typing does not repeat them

    def log(self, kind: types.MessageType, message: str) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=f"sharpedges: {message}"))

    def is_open(self, uri: str) -> bool:
        return uri in self.workspace.text_documents

    def path_of(self, uri: str) -> str:
        path = uris.to_fs_path(uri) if uri.startswith("file:") else None
        if path is None:
            return str(Path(self.workspace.root_path or Path.cwd()) / UNSAVED_NAME)
        return str(Path(path).absolute())

    def current(self, uri: str) -> translate.CheckedText | None:
        """The published results, if they are for the document's present version."""
        checked = self.checked.get(uri)
        if checked is None or not self.is_open(uri) or self.workspace.get_text_document(uri).version != checked.version:
            return None
        return checked

    def is_python(self, uri: str) -> bool:
        return self.workspace.get_text_document(uri).language_id == "python" or uri.endswith(PYTHON_SUFFIXES)

    def schedule(self, uri: str, delay: float) -> None:
        """Check `uri` after `delay` seconds, replacing a check not yet finished."""
        if not self.is_python(uri) or uri in self.checking:
            return  # a check in progress schedules the next one when it ends
        task = self.scheduled.pop(uri, None)
        if task is not None:
            task.cancel()
        self.scheduled[uri] = asyncio.get_running_loop().create_task(self._check(uri, delay))

    async def _check(self, uri: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            document = self.workspace.get_text_document(uri)
            version, text = document.version, document.source
            self.checking.add(uri)
            try:
                result = await self.workers.check(self.path_of(uri), text)
            except CheckFailed as exc:
                self.log(types.MessageType.Error, f"{uri}: {exc}")
                result = {"excluded": False, "diagnostics": [], "errors": [{"path": uri, "message": str(exc)}]}
            finally:
                self.checking.discard(uri)
            if not self.is_open(uri):
                return
            if self.workspace.get_text_document(uri) is not document or document.version != version:
                # changed (or closed and opened again) while being checked: check the newest text next
                asyncio.get_running_loop().call_soon(self.schedule, uri, 0)
                return
            for error in result["errors"]:
                report = f"{uri}: {error['message']} (please report this)"
                if error.get("rule") and report not in self.reported:
                    self.reported.add(report)
                    self.log(types.MessageType.Error, report)
            checked = translate.checked_text(uri, version, text, document.position_codec, result)
            self.checked[uri] = checked
            self.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, version=version, diagnostics=checked.diagnostics)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must cost one check, never the server
            logger.exception("checking %s", uri)
            self.log(types.MessageType.Error, f"{uri}: internal error, not checked: {type(exc).__name__}: {exc}")
        finally:
            if self.scheduled.get(uri) is asyncio.current_task():
                del self.scheduled[uri]

    def forget(self, uri: str) -> None:
        task = self.scheduled.pop(uri, None)
        if task is not None:
            task.cancel()
        self.checked.pop(uri, None)
        self.fixed.pop(uri, None)

    def recheck_all(self) -> None:
        self.workers.config_changed()
        for uri in list(self.workspace.text_documents):
            self.schedule(uri, 0)

    async def fixed_text(self, checked: translate.CheckedText) -> str | None:
        """The document with its safe fixes applied, computed once per version, off the event loop."""
        cached = self.fixed.get(checked.uri)
        if cached is None or cached[0] != checked.version:
            cached = self.fixed[checked.uri] = (checked.version, await asyncio.to_thread(translate.fixed_text, checked))
        return cached[1]

    def stop_checking(self) -> None:
        for uri in list(self.scheduled):
            self.forget(uri)
        self.workers.close()


def build_server(workers: int = 2) -> SharpedgesServer:
    server = SharpedgesServer(workers)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: SharpedgesServer, params: types.InitializedParams) -> None:
        ls.workers.start()
        watched = ls.client_capabilities.workspace and ls.client_capabilities.workspace.did_change_watched_files
        if not (watched and watched.dynamic_registration):
            return
        try:
            await ls.client_register_capability_async(
                types.RegistrationParams(
                    registrations=[
                        types.Registration(
                            id="sharpedges-config",
                            method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                            register_options=types.DidChangeWatchedFilesRegistrationOptions(
                                watchers=[types.FileSystemWatcher(glob_pattern=f"**/{CONFIG_FILE}")]
                            ),
                        )
                    ]
                )
            )
        except Exception as exc:
            ls.log(
                types.MessageType.Warning,
                f"cannot watch {CONFIG_FILE} files ({exc}); save one in the editor or restart to apply a change",
            )

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: SharpedgesServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SharpedgesServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, DEBOUNCE_SECONDS)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: SharpedgesServer, params: types.DidSaveTextDocumentParams) -> None:
        if params.text_document.uri.endswith(f"/{CONFIG_FILE}"):
            ls.recheck_all()
        else:
            ls.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SharpedgesServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: SharpedgesServer, params: types.DidChangeWatchedFilesParams) -> None:
        if any(change.uri.endswith(f"/{CONFIG_FILE}") for change in params.changes):
            ls.recheck_all()

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, translate.FIX_ALL_KIND]),
    )
    async def code_action(ls: SharpedgesServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        checked = ls.current(params.text_document.uri)
        if checked is None:
            return []
        only = params.context.only
        actions = []
        if translate.wanted(types.CodeActionKind.QuickFix, only):
            actions += translate.quick_fixes(checked, params.range)
        fixed = await ls.fixed_text(checked) if translate.wanted(translate.FIX_ALL_KIND, only) else None
        if fixed is not None and ls.current(checked.uri) is checked:
            actions.append(translate.fix_all_action(checked, fixed))
        return actions

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: SharpedgesServer, params: types.HoverParams) -> types.Hover | None:
        checked = ls.current(params.text_document.uri)
        findings = translate.findings_at(checked, params.position) if checked else []
        codes = list(dict.fromkeys(finding.source.rule for finding in findings))
        if not codes:
            return None
        text = "\n\n---\n\n".join(translate.hover_markdown(code) for code in codes)
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text), range=findings[0].lsp.range
        )

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: SharpedgesServer, params: None) -> None:
        ls.stop_checking()

    return server


def serve() -> int:
    server = build_server()
    try:
        server.start_io()
    finally:
        server.stop_checking()
    return 0
