"""`callx eval`: the service's pipeline over labelled calls, scored, side by side per backend."""
