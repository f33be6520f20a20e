"""sharpedges: expert skills and lint rules for transformer code.

Importing the package is cheap on purpose: it never imports torch, and the heavy parts (libcst,
pydantic, jinja2) load only in the commands that need them.
"""

__version__ = "0.1.0"
