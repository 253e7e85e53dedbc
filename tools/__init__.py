"""Command-line helpers: dataset checker, toy world, plots (run with python -m tools.<name>)."""
