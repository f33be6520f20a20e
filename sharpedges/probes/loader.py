"""Import a `MODULE:FACTORY` target from a directory, as pytest imports tests, and build the model."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from functools import reduce
from pathlib import Path
from typing import Any


class TargetError(Exception):
    """The target could not be imported or built; the message is one line."""


def _locations(spec) -> list[str]:
    if spec.origin not in (None, "built-in", "frozen"):
        return [spec.origin]
    return list(spec.submodule_search_locations or [])


def _check_inside(module_name: str, root: Path) -> None:
    """Refuse, before running any of its code, a module (or a parent package) whose files lie
    outside `root`, directly or through a symlink; a built-in module has no file and is refused too."""
    real_root = root.resolve()
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as exc:
            raise TargetError(f"cannot import '{module_name}': {exc}") from None
        if spec is None:
            raise TargetError(f"cannot import '{module_name}': no module named '{name}' in {root}")
        locations = _locations(spec)
        if not locations:
            raise TargetError(f"'{name}': refused: a built-in module, not a file inside {root}")
        for location in locations:
            if not Path(os.path.realpath(location)).is_relative_to(real_root):
                through = " through a symlink" if os.path.realpath(location) != os.path.abspath(location) else ""
                raise TargetError(f"'{name}': refused: {location} resolves{through} outside {root}")


def load_target(target: str, root: Path | None = None) -> Any:
    """The model or adapter built by the zero-argument factory named `MODULE:FACTORY`, imported with
    `root` (default: the current directory) first on sys.path. With `root`, a module outside it is
    refused before it is imported."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise TargetError(f"'{target}': expected MODULE:FACTORY, e.g. models.tiny:build_model")
    sys.path.insert(0, str(root or Path.cwd()))
    if root is not None:
        _check_inside(module_name, root)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # anything the user's module raises on import
        raise TargetError(f"cannot import '{module_name}': {type(exc).__name__}: {exc}") from None
    try:
        factory = reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise TargetError(f"'{module_name}' has no attribute '{attribute}'") from None
    if not callable(factory):
        raise TargetError(f"'{target}' is not callable: give a function that returns the model")
    try:
        built = factory()
    except Exception as exc:
        raise TargetError(f"'{target}()' raised {type(exc).__name__}: {exc}") from None
    from sharpedges.probes.adapter import as_adapter

    try:
        as_adapter(built)  # an adapter, or a model it can wrap: a torch.nn.Module
    except TypeError:
        raise TargetError(
            f"'{target}()' returned {type(built).__name__}: expected a torch.nn.Module or a "
            "sharpedges.probes.ModelAdapter"
        ) from None
    return built
