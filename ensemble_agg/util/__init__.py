"""Helpers with no dependencies that every layer may import: message text, rate limits."""
