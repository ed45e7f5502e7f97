"""Count how a request crosses the layer's modules (docs/ARCHITECTURE.md, "One inbound text").

While active, every Python call whose code lives in the layer (``leadlookup.*``) is attributed
to its module (the cache adapter's package counts as one module). A *crossing* is a call into
a different layer module than the caller's; a *return* is a crossing into a module the
request had entered before and left (it is no longer on the stack). Calls into libraries
(redis, pg8000, Powertools) and back out are not crossings of the layer; the layer module that
made them stays the caller.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

LAYER = Path(__file__).resolve().parents[2] / "layers" / "leadlookup" / "leadlookup"


def _module(frame: FrameType) -> str | None:
    """The layer module of ``frame``'s code (``usecases.lookups``), or None outside the layer."""
    path = Path(frame.f_code.co_filename)
    try:
        relative = path.resolve().relative_to(LAYER)
    except ValueError:
        return None
    parts = relative.with_suffix("").parts
    # The cache adapter is one adapter behind one interface (CacheRegion); its package's
    # files (keys, breaker, backend, read-through) are its insides, not modules a request
    # crosses.
    if parts[:2] == ("adapters", "cache"):
        return "adapters.cache"
    return ".".join(parts)


@dataclass
class Crossings:
    """What one traced run crossed."""

    modules: list[str] = field(default_factory=list)  # in the order first entered
    calls: list[tuple[str, str]] = field(default_factory=list)  # (from, to) per crossing
    returns: list[tuple[str, str]] = field(default_factory=list)
    _stack: list[str] = field(default_factory=list)

    def __enter__(self) -> Crossings:
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            module = _module(frame)
            if module is None:
                return
            caller = self._caller(frame.f_back)
            if caller is not None and caller != module:
                self.calls.append((caller, module))
                visited = module in self.modules
                if visited and module not in self._stack:
                    self.returns.append((caller, module))
            if module not in self.modules:
                self.modules.append(module)
            self._stack.append(module)
        elif event == "return" and _module(frame) is not None and self._stack:
            self._stack.pop()

    @staticmethod
    def _caller(frame: FrameType | None) -> str | None:
        """The nearest layer module below ``frame`` on the stack (skipping library frames)."""
        while frame is not None:
            module = _module(frame)
            if module is not None:
                return module
            frame = frame.f_back
        return None
