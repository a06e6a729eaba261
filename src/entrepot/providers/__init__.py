"""Providers: translate an OpenAI-format request to an upstream and back."""
