"""bert-lottery's algorithms, and its Python API (`lottery.api`; `retrain` from `pipeline.api`):

    from lottery import find_ticket, magnitude_ticket, Ticket, retrain

Imported lazily, so `import lottery.<module>` stays light and this package never imports Lightning
(tests/test_layering.py)."""

from __future__ import annotations

from typing import Any

__all__ = ["Ticket", "find_ticket", "magnitude_ticket", "retrain"]


def __getattr__(name: str) -> Any:
    if name in ("Ticket", "find_ticket", "magnitude_ticket"):
        from lottery import api

        return getattr(api, name)
    if name == "retrain":
        from pipeline.api import retrain

        return retrain
    raise AttributeError(f"module 'lottery' has no attribute {name!r}")
