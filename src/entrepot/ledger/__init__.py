"""Ledger: tokens to cost, one usage record per request, metrics."""
