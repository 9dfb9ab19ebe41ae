"""Accepting transcripts: one at a time or in bulk, validated, stored, queued after commit."""
