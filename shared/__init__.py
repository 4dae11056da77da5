"""What the edge and the workers must agree on: configuration, Redis key names and message
schemas, the μ-law helpers, logging and stream plumbing. Nothing here does I/O on import."""
