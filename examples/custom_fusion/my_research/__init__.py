"""A stand-in for your research package: fusions, their options, and an mmcore plugin."""
