"""Shared building blocks: cross-modal transformer, sequence encoder, text encoder."""
