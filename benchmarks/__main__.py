"""``python -m benchmarks``: every speed benchmark, then docs/PERFORMANCE.md (see run_all)."""
from benchmarks.run_all import main

main()
