"""Rule specs: one YAML file per rule (SHPxxx.yaml), validated by sharpedges.specs."""
