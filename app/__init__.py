"""callx: customer-call transcripts in, product and reason out."""
