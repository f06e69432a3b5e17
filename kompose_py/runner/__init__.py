"""Starting processes: commands and outcomes (command.py), the process tree (proctree.py),
signals and cancellation (supervisor.py), the real and the dry-run runner (run.py)."""
