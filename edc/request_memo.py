"""A memo that lives for one request (issue 22): what every check of a request asks again (the
user's study roles) is read once and reused by each check of that request.

`RequestMemoMiddleware` opens an empty memo around each request (a context variable, so each
thread or task has its own); `memoized(key, compute)` returns the value computed first in this
request. Outside a request (services called by Celery tasks, management commands, tests calling
services directly) there is no memo and `compute()` runs every time, as before: a memo can never
outlive the request that filled it, so no change made by another request is missed."""

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_memo: ContextVar[dict | None] = ContextVar("edc_request_memo", default=None)


def memoized(key: Any, compute: Callable[[], T]) -> T:  # noqa: ANN401
    """`compute()` once per request for `key`; every call outside a request computes."""
    store = _memo.get()
    if store is None:
        return compute()
    if key not in store:
        store[key] = compute()
    return store[key]


def remember(key: Any, value: Any) -> None:  # noqa: ANN401
    """Set `key` in this request's memo (no-op outside a request)."""
    store = _memo.get()
    if store is not None:
        store[key] = value


def recall(key: Any, default: Any = None) -> Any:  # noqa: ANN401
    """What this request's memo holds for `key` (`default` if nothing, or outside a request)."""
    store = _memo.get()
    return default if store is None else store.get(key, default)


def forget(key: Any) -> None:  # noqa: ANN401
    """Drop `key` from this request's memo (a service that changes what it memoizes calls it)."""
    store = _memo.get()
    if store is not None:
        store.pop(key, None)


class RequestMemoMiddleware:
    """Opens the memo for the request and closes it after the response is made."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):  # noqa: ANN001, ANN204
        token = _memo.set({})
        try:
            return self.get_response(request)
        finally:
            _memo.reset(token)
