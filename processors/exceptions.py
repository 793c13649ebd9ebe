"""Errors raised by the pure computation package.

Every error derives from :class:`ProcessorError`, itself a ``ValueError``: the stream
layer can catch one family for "this record cannot be computed" and let real bugs
(``TypeError``, ``AttributeError``) surface.
"""

from __future__ import annotations

__all__ = ["InvalidRule", "InvalidValue", "ProcessorError", "UnitError", "UnknownKey"]


class ProcessorError(ValueError):
    """Base class: a value handed to ``processors`` cannot be computed with."""


class InvalidValue(ProcessorError):
    """A number that is not usable: NaN, infinite, negative where forbidden, malformed."""


class UnitError(ProcessorError):
    """An unknown pollutant or unit, or a unit that makes no sense for the pollutant."""


class UnknownKey(ProcessorError):
    """An AQI key (pollutant + averaging period) or pollutant the AQI tables do not define."""


class InvalidRule(ProcessorError):
    """A mapping table or privacy rule that cannot be applied (bad category, bad grid size)."""
