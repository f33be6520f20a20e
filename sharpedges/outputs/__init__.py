"""Output formats. Each module has `render(result, specs) -> str`; none knows any particular rule."""

FORMATS = ("concise", "full", "json", "sarif", "github")


def render(format_name: str, result, specs) -> str:
    import importlib

    module = importlib.import_module(f"sharpedges.outputs.{format_name}")
    return module.render(result, specs)


def plural(count: int, word: str) -> str:
    """'1 file', '2 files', '2 hidden fixes': the count with its noun, in the plural unless it is one."""
    ending = "es" if word.endswith(("s", "x", "ch", "sh")) else "s"
    return f"{count} {word}{'' if count == 1 else ending}"
