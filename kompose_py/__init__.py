"""kompose-py: run many Docker Compose stacks with their bash hooks."""

__version__ = "0.1.0"
