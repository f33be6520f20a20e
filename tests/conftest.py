import os
import subprocess
import sys

import pytest


@pytest.fixture
def run_cli(tmp_path):
    """Run the real `sharpedges` command in a subprocess (cwd: the test's tmp_path by default)."""

    def run(*args, cwd=None, input=None, env=None):
        full_env = dict(os.environ)
        full_env.pop("SHARPEDGES_NO_SCREEN", None)  # a test asks for it explicitly through `env`
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "sharpedges", *args],
            cwd=cwd or tmp_path,
            input=input,
            capture_output=True,
            text=isinstance(input, str) or input is None,
            env=full_env,
            timeout=600,
        )

    return run
