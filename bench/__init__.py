"""callx benchmarks: every figure against a floor measured in the same run. Not tests."""
