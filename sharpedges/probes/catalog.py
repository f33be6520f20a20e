"""Which rules each probe confirms, and how its results are reported (JSON and concise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class ProbeInfo:
    name: str
    rules: tuple[str, ...]  # the rules whose bugs the probe confirms; their specs name the skill edges


PROBES: dict[str, ProbeInfo] = {
    info.name: info
    for info in (
        ProbeInfo("causal", ("SHP201", "SHP202")),
        ProbeInfo("eval-deterministic", ("SHP701",)),
        ProbeInfo("kv-cache-consistent", ("SHP204", "SHP401")),
        ProbeInfo("padding-invariant", ("SHP203",)),
        ProbeInfo("half-precision", ("SHP103", "SHP105", "SHP601")),
        ProbeInfo("grad-flow", ("SHP502",)),
    )
}


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
        return {
            "name": self.name,
            "status": self.status,
            "rule": "/".join(self.info.rules),
            "edges": [specs[code].skill for code in self.info.rules],
            "detail": self.detail,
            "measured": self.measured,
            "seconds": round(self.seconds, 3),
        }


def concise(results: list[ProbeResult]) -> str:
    """One line per probe, then a count, in the shape of `sharpedges check`'s concise output."""
    width = max(len(result.name) for result in results)
    lines = [
        f"{result.name:<{width}}  {result.status.upper():<4}  {'/'.join(result.info.rules)}  {result.detail}"
        for result in results
    ]
    counts = {status: sum(result.status == status for result in results) for status in (PASS, FAIL, SKIP)}
    lines.append(f"{len(results)} probes: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines)
