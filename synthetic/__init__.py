"""Synthetic track: log-linear DPO on a contextual bandit (H = 1) or tabular MDP (H > 1)."""

from synthetic.constants import Constants, exact_constants, hessian_max_eig_at
from synthetic.oracle import LogLinearDPO, SyntheticOracle
from synthetic.problem import ProblemConfig, SyntheticProblem, build_problem

__all__ = ["Constants", "exact_constants", "hessian_max_eig_at", "LogLinearDPO",
           "SyntheticOracle", "ProblemConfig", "SyntheticProblem", "build_problem"]
