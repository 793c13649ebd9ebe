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
    """Run a block under a private copy of :data:`DECIMAL_CONTEXT` (thread-safe).

    The per-reading paths (means, unit conversion, the EPA tables, NowCast) call the
    context's own methods instead (``DECIMAL_CONTEXT.add(a, b)``, ``quantize(...,
    context=DECIMAL_CONTEXT)``): the same arithmetic, without copying a context and
    switching the thread's to it twice per block (4 % of the compiled step).
    The shared context's flags then pile up; nothing reads them, and its traps still
    raise on the operation that trips them.
    """
    return localcontext(DECIMAL_CONTEXT)
