"""A Dassl.pytorch-compatible training engine (API subset of Dassl.pytorch v0.6.3).

See docs/engine.md for what is implemented and where it deliberately departs from upstream.
"""

__version__ = "0.6.3"
