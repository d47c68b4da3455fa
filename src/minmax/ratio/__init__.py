"""Put D* = log P/Q to work: calibrated ratios, corrected sampling, divergences, mode drops.

from minmax.ratio import calibrate, sample_corrected, diagnose
calibrate("runs/00000-ring")                         # -> runs/00000-ring/calibrated/
x, y, stats = sample_corrected("runs/00000-ring", "drs", 2500)
diagnose("runs/00000-ring")                          # -> runs/00000-ring/diagnose/
"""

from minmax.ratio.calibrate import Calibration, CalibrationConfig, calibrate, load_calibrated
from minmax.ratio.correct import (
    METHODS,
    CorrectionStats,
    correct,
    discriminator_rejection,
    importance_resampling,
    metropolis_hastings,
)
from minmax.ratio.diagnose import Diagnosis, diagnose
from minmax.ratio.divergence import Estimate, divergence_estimates, exact_divergences
from minmax.ratio.sampling import generator_proposal, sample_corrected

__all__ = [
    "METHODS",
    "Calibration",
    "CalibrationConfig",
    "CorrectionStats",
    "Diagnosis",
    "Estimate",
    "calibrate",
    "correct",
    "diagnose",
    "discriminator_rejection",
    "divergence_estimates",
    "exact_divergences",
    "generator_proposal",
    "importance_resampling",
    "load_calibrated",
    "metropolis_hastings",
    "sample_corrected",
]
