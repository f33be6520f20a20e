"""One detector per rule; each module defines exactly one Detector subclass whose `code` names its spec."""
