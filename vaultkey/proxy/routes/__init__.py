"""One router module per resource: kv, recipients, tokens, sys."""
