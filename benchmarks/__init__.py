"""Speed and memory benchmarks of ALIGN against the reference computation (issue 7).

``benchmarks.reference``: the official code's computation, written from docs/method.md.
``benchmarks.bench_align``: the command-line benchmark (``python -m benchmarks.bench_align``).
"""
