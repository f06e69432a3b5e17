"""What runs a stack's services: the protocol (base.py), the Docker engine beneath every
backend (docker.py), and the backends (compose.py)."""
