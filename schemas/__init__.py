"""Pydantic models shared by the API, the pipeline and the workers."""
