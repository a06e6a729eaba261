"""Routing: which deployment serves a request."""
