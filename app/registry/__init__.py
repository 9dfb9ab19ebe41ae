"""The model registry: adapters recorded with their evaluations, the gate that promotes one,
and the promoted adapter that workers load (app/registry/service.py)."""

# A guard's allowance (app/registry/gate.py): reason-accuracy points a candidate may lose on it.
# Two points is the flywheel benchmark's goal for callx's own calls (docs/flywheel.md).
GUARD_MAX_LOSS = 2.0
