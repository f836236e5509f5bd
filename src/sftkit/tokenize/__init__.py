"""Tokenization: chat templates, rendering to ids + labels (the one place masks are made), packing."""
