"""Limits: request and token rates, and spending budgets, enforced before a request runs."""
