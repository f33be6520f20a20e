"""What each probe is for and how its verdict is reported; torch-free, so the CLI and the MCP
server can name probes and print results without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class ProbeInfo:
    name: str
    rules: tuple[str, ...]  # the rules whose bugs the probe confirms; their specs name the skill edges
    checks: str


PROBES: dict[str, ProbeInfo] = {info.name: info for info in (
    ProbeInfo("causal", ("SHP201", "SHP202"),
              "changing tokens after position t leaves outputs at <= t unchanged; outputs at t depend on earlier tokens"),
    ProbeInfo("eval-deterministic", ("SHP701",),
              "in eval() two forward passes agree exactly; in train() with dropout they differ"),
    ProbeInfo("kv-cache-consistent", ("SHP204", "SHP401"),
              "cached decoding, one token at a time and in multi-token chunks, matches a full forward"),
    ProbeInfo("padding-invariant", ("SHP203",),
              "left or right padding with an attention mask leaves the real positions' outputs unchanged"),
    ProbeInfo("half-precision", ("SHP103", "SHP105", "SHP601"),
              "fp16 and bf16 outputs are finite and close to fp32; fully masked rows give no NaN"),
    ProbeInfo("grad-flow", ("SHP502",),
              "one backward pass reaches every trainable parameter; MoE routers get a gradient from the "
              "balancing loss"),
)}


@dataclass
class Verdict:
    """What one probe found: its status, a sentence with the numbers, and the numbers."""
    status: str  # PASS, FAIL or SKIP
    detail: str
    measured: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeResult:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str
    measured: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def info(self) -> ProbeInfo:
        return PROBES[self.name]

    def to_json(self) -> dict[str, Any]:
        from sharpedges.specs import load_specs

        specs = load_specs()
        return {"name": self.name, "status": self.status, "rule": "/".join(self.info.rules),
                "edges": [specs[code].skill for code in self.info.rules], "detail": self.detail,
                "measured": self.measured, "seconds": round(self.seconds, 3)}


def concise(results: list[ProbeResult]) -> str:
    """One line per probe, then a count, in the shape of `sharpedges check`'s concise output."""
    width = max(len(result.name) for result in results)
    lines = [f"{result.name:<{width}}  {result.status.upper():<4}  {'/'.join(result.info.rules)}  {result.detail}"
             for result in results]
    counts = {status: sum(result.status == status for result in results) for status in (PASS, FAIL, SKIP)}
    lines.append(f"{len(results)} probes: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines)
