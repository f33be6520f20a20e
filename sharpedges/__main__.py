"""`python -m sharpedges`: the `sharpedges` command, from any directory."""

import os
import sys

if getattr(sys.modules.get("sharpedges"), "__file__", None) is None:
    # `python -m` puts the current directory first on sys.path, so a bare folder named sharpedges
    # there (the parent of a clone, say) was imported as a namespace package in place of the
    # installed one (an editable install is found after it). Drop that entry and import again.
    here = os.getcwd()
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    for name in [name for name in sys.modules if name == "sharpedges" or name.startswith("sharpedges.")]:
        del sys.modules[name]

from sharpedges.cli import main

raise SystemExit(main())
