"""Hooks: how a lower layer calls the one function it needs from a layer above it, without importing it.

The lower app declares each hook in its `hooks.py` (what it is for, its arguments, which app
provides it) and calls it where the effect happens, in plain sight: `hooks.schedule_generate(...)`
inside `participant_screen`. The upper app registers its function in its `AppConfig.ready()`. One
provider per hook, no ordering, no signal: reading the call and the hook's declaration tells a
reader exactly which function runs. Calling a hook nobody provides is a configuration error, never
a silent no-op (docs/architecture.md, *Layers*).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured


class Hook:
    """One function a lower app calls and exactly one upper app provides."""

    def __init__(self, name: str, provided_by: str) -> None:
        self.name = name
        self.provided_by = provided_by  # the app expected to register it, for the error message
        self._provider: Callable[..., Any] | None = None

    def register(self, provider: Callable[..., Any]) -> Callable[..., Any]:
        """Provide the hook (from the upper app's AppConfig.ready()); a second, different provider is refused."""
        if self._provider is not None and self._provider is not provider:
            raise ImproperlyConfigured(f"hook {self.name} is already provided by {self._provider.__module__}.{self._provider.__qualname__}")
        self._provider = provider
        return provider

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        if self._provider is None:
            raise ImproperlyConfigured(f"hook {self.name} has no provider: is {self.provided_by} in INSTALLED_APPS?")
        return self._provider(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Hook {self.name} provided by {self.provided_by}>"
