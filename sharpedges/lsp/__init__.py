"""`sharpedges lsp`: the editor face, a Language Server over stdio built on pygls.

`checking` runs in worker processes and knows nothing of the protocol; `translate` turns its
results into LSP diagnostics, code actions and hovers; `server` wires both to the editor.
"""
