"""Aggregating the results that train.py writes to its logs (the engine of parse_test_res.py).

- ``logs``: reading one log, and the result of a run folder (its newest complete log);
- ``records``: the report, a flat list of records (runs, summaries, seeds, dataset rows, method
  averages, problems);
- ``runs``: CoOp's runs mode; ``base2new``: the base-to-new tables and the method comparison;
- ``reference``: published numbers beside the measured ones;
- ``render_text``, ``render_data``: the report as text, CSV or JSON.
"""
