"""What an operator sees of a running server: health checks and the metrics page."""
