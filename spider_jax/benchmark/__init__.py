"""The paper's Table 2 / Table 8 benchmark: scoring, report and driver (CLI: __main__)."""

from spider_jax.benchmark.report import anchor_rows, format_markdown, machine_info, report
from spider_jax.benchmark.run import ABLATIONS, ensure_trained, run_benchmark
from spider_jax.benchmark.scoring import (PROTOCOLS, EvalTask, fewshot_rows, protocol_tasks,
                                          score_tasks)

__all__ = ["run_benchmark", "ensure_trained", "fewshot_rows", "ABLATIONS", "PROTOCOLS",
           "EvalTask", "protocol_tasks", "score_tasks", "anchor_rows", "format_markdown",
           "machine_info", "report"]
