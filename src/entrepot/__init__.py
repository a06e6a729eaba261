"""Entrepôt: a neutral port for AI models."""

__version__ = "0.1.0"
