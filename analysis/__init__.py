"""Analysis layer: reads only the results schema (a tidy DataFrame), fits rates, checks bounds,
and gives claim verdicts."""

from .bounds_check import bound_validity
from .fits import FitResult, RatioFit, TermsFit, fit_terms, linear_fit, loglog_slope, rate_in_T, ratio_fit
from .floors import TAIL, floors_by, is_stationary, plateau
from .verdict import (Verdict, decide, judge_bound, judge_exponent, judge_identical,
                      judge_ordering, judge_ratio)

__all__ = [
    "FitResult", "RatioFit", "TermsFit", "Verdict",
    "TAIL", "bound_validity", "decide", "fit_terms", "floors_by", "is_stationary", "judge_bound",
    "judge_exponent", "judge_identical", "judge_ordering", "judge_ratio", "linear_fit",
    "loglog_slope", "plateau", "rate_in_T", "ratio_fit",
]
