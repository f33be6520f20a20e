"""Expert skills: one YAML file per skill, validated by sharpedges.knowledge.schema."""
