"""API keys: their format and hashing, who may call what, and when keys are required at all."""
