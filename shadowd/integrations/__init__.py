"""Integrations with the places production calls Claude from (LiteLLM)."""
