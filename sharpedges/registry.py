"""Pairs every rule spec with exactly one detector class, and selects rules by code prefix."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache

from sharpedges.detector import Detector
from sharpedges.specs import RuleSpec, load_specs


class RegistryError(Exception):
    pass


@dataclass(frozen=True)
class Rule:
    spec: RuleSpec
    detector: type[Detector]

    @property
    def code(self) -> str:
        return self.spec.code


def _detector_classes() -> dict[str, type[Detector]]:
    import sharpedges.detectors as package

    found: dict[str, type[Detector]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        classes = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, Detector)
            and obj is not Detector
            and obj.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise RegistryError(f"detectors/{info.name}.py must define exactly one Detector, found {len(classes)}")
        detector = classes[0]
        if detector.code in found:
            raise RegistryError(
                f"two detectors claim {detector.code}: {found[detector.code].__module__} and {module.__name__}"
            )
        found[detector.code] = detector
    return found


@lru_cache(maxsize=1)
def all_rules() -> dict[str, Rule]:
    specs = load_specs()
    detectors = _detector_classes()
    missing = sorted(set(specs) - set(detectors))
    orphans = sorted(set(detectors) - set(specs))
    if missing:
        raise RegistryError(f"rule spec without a detector: {', '.join(missing)}")
    if orphans:
        raise RegistryError(f"detector without a rule spec: {', '.join(orphans)}")
    return {code: Rule(specs[code], detectors[code]) for code in sorted(specs)}
