"""The bottom layer: the interface types every other folder builds on (Task, Example, Access, the
views, Usage, Artifact, Method, the record of a cell), the one shared scorer, the plugin registry and
the user-facing error. It imports nothing from the folders above it (tests/test_structure.py)."""
