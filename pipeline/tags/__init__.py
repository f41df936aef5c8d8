"""Modality-specific tag generation (vLLM/OpenAI-compatible or offline) and cleaning."""
