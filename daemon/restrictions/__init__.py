"""The restriction evaluator: which documents go to which export account (SPEC section 2).

``RestrictionsConfig`` is what users write under ``exports[].restrictions``;
``compile_restrictions`` turns it into an :class:`Evaluator` once per account,
which then decides per document, purely and without I/O
(``evaluate`` for the verdict with reasons, ``accepts`` for the verdict alone,
``sql_filter`` for the origins and period checks as a WHERE clause).
"""

from .config import RestrictionsConfig
from .evaluator import Check, Decision, Evaluator, compile_restrictions
from .periods import DayWindow

__all__ = [
    "Check",
    "DayWindow",
    "Decision",
    "Evaluator",
    "RestrictionsConfig",
    "compile_restrictions",
]
