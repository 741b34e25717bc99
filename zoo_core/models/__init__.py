"""Architectures (catalog), configs, canonical weight names and model resolution."""
