"""Run the benchmark suite: `python -m bench [--quick] [--only NAME ...]`.

Prints one table (each figure with the floor measured in the same run, the ratio and the
target) and writes reports/bench.json. Benchmarks are not tests: run them on a quiet machine.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bench.common import BenchRow, render, write_json

SUITE = (
    "local_model",
    "worker_throughput",
    "openai_inflight",
    "rate_limit",
    "ingest",
    "analytics",
    "worker_stop",
)
# Run with --only: needs the finetune extra and ../shared/datasets/.
OPTIONAL = ("finetune_step",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", choices=SUITE + OPTIONAL, help="run these only")
    parser.add_argument("--json", type=Path, default=Path("reports/bench.json"))
    args = parser.parse_args()
    rows: list[BenchRow] = []
    for name in args.only or SUITE:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        part = module.run(args.quick)
        print(render(part), flush=True)
        rows += part
    print("\n" + render(rows))
    write_json(args.json, rows)
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
