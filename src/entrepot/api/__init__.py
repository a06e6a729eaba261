"""API: HTTP parsing, authentication, OpenAI-format errors and SSE streaming."""
