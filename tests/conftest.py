import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_cli(tmp_path):
    """Run the real `sharpedges` command in a subprocess; returns CompletedProcess."""
    import subprocess

    def run(*args, cwd=None, input=None, env=None):
        full_env = {**os.environ, **(env or {})}
        full_env.pop("SHARPEDGES_NO_SCREEN", None) if env is None or "SHARPEDGES_NO_SCREEN" not in env else None
        return subprocess.run([sys.executable, "-m", "sharpedges", *args], cwd=cwd or tmp_path, input=input,
                              capture_output=True, text=isinstance(input, str) or input is None, env=full_env,
                              timeout=600)

    return run
