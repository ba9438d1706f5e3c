"""`billing_platform.core.scope`: values read once per run scope, and every time outside one."""

from __future__ import annotations

from billing_platform.core.scope import run_scope, scoped


def test_a_value_is_computed_once_per_scope_and_every_time_outside() -> None:
    calls: list[str] = []

    def compute(name: str) -> str:
        calls.append(name)
        return name.upper()

    assert scoped("a", lambda: compute("a")) == "A"
    assert scoped("a", lambda: compute("a")) == "A"
    assert calls == ["a", "a"]
    with run_scope():
        assert scoped("a", lambda: compute("a")) == "A"
        with run_scope():  # an inner scope is the outer one's
            assert scoped("a", lambda: compute("a")) == "A"
            assert scoped("b", lambda: compute("b")) == "B"
        assert scoped("b", lambda: compute("b")) == "B"
    assert calls == ["a", "a", "a", "b"]
    with run_scope():  # a new scope reads again
        scoped("a", lambda: compute("a"))
    assert calls == ["a", "a", "a", "b", "a"]
