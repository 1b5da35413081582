"""Analysis layer: reads only the results schema (a tidy DataFrame), fits rates, checks bounds,
and gives claim verdicts."""

from .bounds_check import bound_validity
from .fits import FitResult, TermsFit, fit_terms, linear_fit, loglog_slope, rate_in_T
from .floors import floors_by, is_stationary, plateau
from .verdict import (Verdict, judge_bound, judge_exponent, judge_identical,
                      judge_ordering)

__all__ = [
    "FitResult", "TermsFit", "Verdict",
    "bound_validity", "fit_terms", "floors_by", "is_stationary", "judge_bound",
    "judge_exponent", "judge_identical", "judge_ordering", "linear_fit", "loglog_slope",
    "plateau", "rate_in_T",
]
