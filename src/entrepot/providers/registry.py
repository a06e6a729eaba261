"""Providers registered by name. Adding one is a new module and one line here.

Entries are import paths, not classes, so a deployment that is not configured costs nothing —
in particular llama-cpp-python is only imported when a local model is.
"""

from __future__ import annotations

import importlib

from entrepot.config import ModelConfig, ProviderName
from entrepot.providers.base import Provider

PROVIDERS: dict[ProviderName, str] = {
    "openai_compatible": "entrepot.providers.openai_compatible:OpenAICompatibleProvider",
    "anthropic": "entrepot.providers.anthropic:AnthropicProvider",
    "llama_cpp": "entrepot.providers.llama_cpp:LlamaCppProvider",
}


def create_provider(config: ModelConfig) -> Provider:
    # The configuration admits only the names registered here (`config.ProviderName`).
    path = PROVIDERS[config.provider]
    module_name, _, class_name = path.partition(":")
    provider_class = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = provider_class(config)
    return provider
