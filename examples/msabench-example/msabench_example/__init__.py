"""An example msabench plugin package: its models register when msabench reads the
entry point group `msabench.models` (see pyproject.toml)."""
