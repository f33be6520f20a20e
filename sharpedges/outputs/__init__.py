"""Output formats. Each module has `render(result, specs) -> str`; none knows any particular rule."""

FORMATS = ("concise", "full", "json", "sarif", "github")


def render(format_name: str, result, specs) -> str:
    import importlib

    module = importlib.import_module(f"sharpedges.outputs.{format_name}")
    return module.render(result, specs)
