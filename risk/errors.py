"""Errors raised by the margin core when it cannot produce a trustworthy figure."""


class RiskModelError(ValueError):
    """No margin can be computed: a missing or non-finite price or vol, an unknown
    grid, a missing history, an expired instrument. Risk checks treat it as a
    rejection (fail closed), never as "no risk"."""
