"""What an operator sees of a running server: health checks (and, next, metrics)."""
