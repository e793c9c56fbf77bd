"""hypothesis-jsonschema 0.23.1 (schemathesis 3.x draws objects with it) calls `many.more()`,
which Hypothesis replaced by a `with many(...) as elements: for _ in elements:` protocol in
6.16x. Until a hypothesis-jsonschema release follows, `more()` is rebuilt on the new protocol
(its only caller loops `while elements.more():` to the end, so the block is always closed)."""

from hypothesis.internal.conjecture import utils as cu


def _more(self) -> bool:
    if getattr(self, "_compat_iter", None) is None:
        self.__enter__()
        self._compat_iter = iter(self)
    try:
        next(self._compat_iter)
    except StopIteration:
        self.__exit__(None)
        return False
    return True


if not hasattr(cu.many, "more"):
    cu.many.more = _more
