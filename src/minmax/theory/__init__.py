"""The founding text's claims, measured on known densities (``minmax theory``)."""

from minmax.theory.checks import TheoryReport, run_checks

__all__ = ["TheoryReport", "run_checks"]
