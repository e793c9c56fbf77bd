"""edc.request_memo: a value is computed once per request, and never outlives its request."""

from django.http import HttpResponse

from edc.request_memo import RequestMemoMiddleware, forget, memoized


def counter():  # noqa: ANN201
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)
    return compute, calls


def test_outside_a_request_every_call_computes():
    compute, calls = counter()
    assert [memoized("k", compute), memoized("k", compute)] == [1, 2]
    assert len(calls) == 2


def test_inside_a_request_once_and_the_next_request_starts_afresh():
    compute, calls = counter()
    seen = []

    def view(request) -> HttpResponse:  # noqa: ANN001
        seen.append((memoized("k", compute), memoized("k", compute)))
        forget("k")
        seen.append(memoized("k", compute))
        return HttpResponse()

    middleware = RequestMemoMiddleware(view)
    middleware(object())
    middleware(object())
    assert seen == [(1, 1), 2, (3, 3), 4]
    assert memoized("k", compute) == 5  # after the requests: no memo left behind
