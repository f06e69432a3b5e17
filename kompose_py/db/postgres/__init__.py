"""PostgreSQL: client tool argv and errors (tools.py), catalog SQL and swap steps
(catalog.py), admin back ends (admin.py), dump formats (formats.py), the psql meta-command
guard (scan.py)."""
