"""Metrics: exact toy metrics (mode coverage, divergences between known densities)."""

from minmax.metrics.exact import jsd_grid, jsd_monte_carlo, log_ratio
from minmax.metrics.modes import ModeReport, mode_report

__all__ = ["ModeReport", "jsd_grid", "jsd_monte_carlo", "log_ratio", "mode_report"]
