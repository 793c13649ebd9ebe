"""The one decimal context used for concentration arithmetic.

Every field is given explicitly so nothing is inherited from ``decimal.DefaultContext``
or from the calling thread's context: results are the same whoever calls us.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

__all__ = ["DECIMAL_CONTEXT", "decimal_context"]

DECIMAL_CONTEXT = Context(
    prec=28,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[InvalidOperation, DivisionByZero, Overflow],
)


def decimal_context() -> AbstractContextManager[Context]:
    """Run a block under a private copy of :data:`DECIMAL_CONTEXT` (thread-safe)."""
    return localcontext(DECIMAL_CONTEXT)
