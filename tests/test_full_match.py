"""Validators match the whole input: `$` also matches before a trailing newline.

`re.match(r"^[a-z]+$", "acme\\n")` succeeds, which let the slug `"acme\\n"` through and made the
schema `t_acme\\n`. Every validator uses `fullmatch` instead; the guard below keeps a
new one from calling `match` or `search` on a pattern again.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from billing_platform.core import errors
from billing_platform.core.observability import sane_request_id
from billing_platform.webhooks.services import _check_headers
from tenants.services import validate_rate_limit, validate_slug
from tests.support import ROOT

PACKAGES = ("billable", "tenants", "billing_platform")
PARTIAL = frozenset({"match", "search"})


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from (p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def _compiled_names(tree: ast.Module) -> set[str]:
    """Names bound at module level to `re.compile(...)`."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr == "compile":
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _partial_matches(path: Path, tree: ast.Module, compiled: set[str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner, attr = node.func.value, node.func.attr
        if attr not in PARTIAL or not isinstance(owner, ast.Name):
            continue
        if owner.id == "re" or owner.id in compiled:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {owner.id}.{attr}(...)")
    return found


def test_no_validator_matches_only_a_prefix() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in _sources()}
    # Patterns are imported across modules (`from billable.catalog_keys import KEY_RE`).
    compiled = {name for tree in trees.values() for name in _compiled_names(tree)}
    found = [
        line for path, tree in trees.items() for line in _partial_matches(path, tree, compiled)
    ]
    assert not found, "use .fullmatch (or \\Z), not match/search:\n" + "\n".join(found)


def _refused(check: Callable[[], object]) -> bool:
    try:
        check()
    except errors.BillingError:
        return True
    return False


@pytest.mark.parametrize("tail", ["\n", "\r\n", "\n\n"])
@pytest.mark.parametrize(
    "check",
    [
        pytest.param(lambda tail: validate_slug("acme" + tail), id="slug"),
        pytest.param(lambda tail: validate_rate_limit("10/m" + tail), id="rate-limit"),
        pytest.param(lambda tail: validate_rate_limit("0" + tail), id="rate-limit-zero"),
        pytest.param(lambda tail: _check_headers({"X-Team" + tail: "a"}), id="header-name"),
    ],
)
def test_a_line_break_after_valid_input_is_refused(
    check: Callable[[str], object], tail: str
) -> None:
    assert _refused(lambda: check(tail))


def test_the_same_input_without_the_line_break_passes() -> None:
    assert validate_slug("acme") == "acme"
    assert validate_rate_limit("10/m") == "10/m"
    assert _check_headers({"X-Team": "a"}) == {"X-Team": "a"}
    assert sane_request_id("req-1") == "req-1"


@pytest.mark.parametrize("value", ["req-1\n", "req-1\r\n"])
def test_a_request_id_with_a_line_break_is_replaced(value: str) -> None:
    assert sane_request_id(value) is None
