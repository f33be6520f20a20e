import pytest


@pytest.fixture(scope="session")
def real_kb():
    from sharpedges.knowledge.registry import load_knowledge

    return load_knowledge()
