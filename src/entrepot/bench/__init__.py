"""Bench: run an organisation's own tasks on several models and compare quality and cost."""
