"""Learning curves per query strategy, measured with an oracle: ``acorn simulate``."""
