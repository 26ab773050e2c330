"""Credentials: password hashing, access tokens, API keys, opaque tokens, rate limits."""
