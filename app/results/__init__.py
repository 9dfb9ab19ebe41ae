"""Reading results: a call with its current answer, the extraction list in keyset pages, and the
analytics, shaped as the API's schemas (the same reads for REST, pages and benchmarks)."""
