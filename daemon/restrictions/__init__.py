"""The restriction evaluator: which documents go to which export account (SPEC section 2).

``RestrictionsConfig`` is what users write under ``exports[].restrictions``;
``compile_restrictions`` turns it into an :class:`Evaluator` once per account,
which then decides per document, purely and without I/O.
"""

from .config import RestrictionsConfig
from .evaluator import Check, Decision, Evaluator, compile_restrictions

__all__ = ["Check", "Decision", "Evaluator", "RestrictionsConfig", "compile_restrictions"]
