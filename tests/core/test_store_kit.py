"""The store kit catches what it promises to: a store whose instances share jobs but wake only
their own waiters fails the two-instance wake-up rules, and a store that is not shared at all fails
the visibility rule, each with a message naming the rule."""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from bifrost_async.store import StoreContext
from bifrost_async.testing import FakeClock, SharedStoreContract, StoreContract

#: The repository (found from here, so this module works wherever the tests directory puts it).
ROOT = next(
    p for p in Path(__file__).resolve().parents if (p / "examples" / "custom_store_plugin.py").exists()
)


def _example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a name of this module's own."""
    spec = importlib.util.spec_from_file_location(f"store_kit_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


custom_store = _example("custom_store_plugin")


class _Kit(SharedStoreContract):
    wake_deadline = 0.5  # the mutant below never wakes: the deadline only bounds the failure


@pytest.fixture
async def half_shared(clock: FakeClock) -> AsyncIterator[tuple[object, object]]:
    """Two example dict stores sharing their jobs, claims and lock (as two processes on one
    database would), but each with its own waiters: no notification crosses between them."""
    context = StoreContext(clock=clock, max_jobs=20, options={})
    one, two = custom_store.dict_store(context), custom_store.dict_store(context)
    two.jobs, two.claims, two.lock = one.jobs, one.claims, one.lock
    yield one, two


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.parametrize(
    "test",
    [
        SharedStoreContract.test_wait_on_one_is_woken_by_a_terminal_update_on_the_other,
        SharedStoreContract.test_delete_on_one_wakes_and_is_seen_by_the_other,
    ],
)
async def test_a_store_that_wakes_only_its_own_waiters_fails_the_kit(
    test: object, half_shared: tuple[object, object], clock: FakeClock
) -> None:
    one, two = half_shared
    with pytest.raises(pytest.fail.Exception, match="rule: wake-ups: wait did not return"):
        await test(_Kit(), one, two, clock)  # type: ignore[operator]


async def test_the_same_store_passes_where_it_does_not_need_notifications(
    half_shared: tuple[object, object], clock: FakeClock
) -> None:
    one, two = half_shared
    await _Kit().test_writes_on_one_are_seen_on_the_other(one, two, clock)  # type: ignore[arg-type]
    await _Kit().test_racing_claims_from_both_only_one_wins(one, two, clock)  # type: ignore[arg-type]


async def test_a_store_that_is_not_shared_fails_the_kit(clock: FakeClock) -> None:
    context = StoreContext(clock=clock, max_jobs=20, options={})
    one, two = custom_store.dict_store(context), custom_store.dict_store(context)
    with pytest.raises(AssertionError, match="rule: shared: a create on A is seen by get on B"):
        await _Kit().test_writes_on_one_are_seen_on_the_other(one, two, clock)


def test_every_contract_test_states_its_rule_and_every_setting_is_documented() -> None:
    """Issue 17: kit tests without docstrings and undocumented settings left authors guessing."""
    tests = [name for name in dir(SharedStoreContract) if name.startswith("test_")]
    assert len(tests) >= 30
    for name in tests:
        doc = getattr(SharedStoreContract, name).__doc__ or ""
        assert doc.startswith("Rule:"), f"{name} has no docstring stating its rule"
    guide = (ROOT / "docs" / "STORES.md").read_text()
    settings = [name for name, value in vars(StoreContract).items() if isinstance(value, bool | int | float)]
    assert sorted(settings) == ["bounded", "max_jobs", "wake_deadline"]
    for name in [*settings, "store_factory", "store_options", "other_store", "clock", "started"]:
        assert f"| `{name}" in guide, f"kit setting {name} is missing from the table in docs/STORES.md"
    for public in ("encode_cursor", "decode_cursor", "encode_position", "page_of", "parse_store_options"):
        assert f"`{public}" in guide, public


def test_every_assertion_of_the_kit_names_its_rule() -> None:
    """A failure must say which rule broke: every assert in a kit test carries a message."""
    # Every module of the store kit's package; the webhook records contract (webhooks.py) is
    # another capability's, whose asserts carry no rule messages yet.
    kit = sorted(p for p in (ROOT / "bifrost_async" / "testing").glob("*.py") if p.name != "webhooks.py")
    assert {"records.py", "bounds.py", "extensions.py", "shared_contract.py"} <= {f.name for f in kit}
    bare = [
        f"{path.name}:{node.name}:{sub.lineno}"
        for path in kit
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("test_")
        for sub in ast.walk(node)
        if isinstance(sub, ast.Assert) and sub.msg is None
    ]
    assert bare == [], f"asserts without a rule message: {bare}"


def test_the_kit_package_keeps_its_public_names_and_the_old_webhooks_module() -> None:
    """Issue 15 split the kit into a package: store authors' imports must keep working."""
    import bifrost_async.testing as kit
    import bifrost_async.testing_webhooks as old_webhooks

    assert sorted(kit.__all__) == [
        "FakeClock",
        "SharedStoreContract",
        "StoreContract",
        "WebhookRecordsContract",
        "finished",
        "make_job",
        "processing",
        "until",
    ]
    assert all(getattr(kit, name) is not None for name in kit.__all__)
    assert old_webhooks.WebhookRecordsContract is kit.WebhookRecordsContract
    assert issubclass(kit.SharedStoreContract, kit.StoreContract)
