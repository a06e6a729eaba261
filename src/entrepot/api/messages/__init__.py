"""Anthropic's Messages API as a surface (see `api/surface.py`): its requests translated into
the internal chat format, and the pipeline's answers, stream chunks and failures written back as
Anthropic's messages, named events and errors. A deployment whose provider speaks the Messages
API itself is sent the client's body as it came, and its answer is relayed as it was sent."""
