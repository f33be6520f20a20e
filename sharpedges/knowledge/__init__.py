"""The knowledge half of sharpedges: skills as YAML data -> pydantic models -> one registry that
links skills, sharp edges and rules -> routing and renderers (CLI text, prompt packs, MCP)."""
