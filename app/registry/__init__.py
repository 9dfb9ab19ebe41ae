"""The model registry: adapters recorded with their evaluations, the gate that promotes one,
and the promoted adapter that workers load (app/registry/service.py)."""
