"""Jobs: sending extraction tasks to the broker, and the reconciler that re-sends lost ones."""
