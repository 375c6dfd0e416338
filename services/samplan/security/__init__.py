"""Tokens, SMART scopes, the access policy and the audit log."""
