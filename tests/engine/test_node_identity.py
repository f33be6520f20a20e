"""libcst nodes are keys by identity: the analyses' dicts and sets rely on it (sharpedges.analysis.walk
gives the node classes a C-level identity hash)."""

import libcst as cst

import sharpedges.analysis.walk  # noqa: F401  (sets the node classes' hash)


def test_equal_looking_nodes_are_distinct_keys():
    first, second = cst.parse_expression("x"), cst.parse_expression("x")
    assert first.deep_equals(second)
    seen = {first: "first", second: "second"}
    assert len(seen) == 2 and seen[first] == "first" and seen[second] == "second"
    assert first in {first} and second not in {first}


def test_a_node_hashes_alike_every_time_and_equals_only_itself():
    node = cst.parse_module("x = y + 1\n").body[0]
    assert hash(node) == hash(node) and node == node and node != cst.parse_module("x = y + 1\n").body[0]


def test_node_classes_made_later_hash_by_identity_too():
    class Marker(cst.Name):
        pass

    first, second = Marker("a"), Marker("a")
    assert {first: 1, second: 2}[first] == 1 and hash(first) != hash(second)
