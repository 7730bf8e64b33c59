"""The lab's container log store: current and previous logs per container, as `kubectl logs [--previous]` reads them."""

from __future__ import annotations

from lab.logserver import LogStore


def _text(lines: list[str] | None) -> list[str] | None:
    return None if lines is None else [line.split(" ", 1)[1] for line in lines]


def test_a_restarted_container_keeps_its_previous_log() -> None:
    store = LogStore()
    store.start("shop", "api-1", "app", ("first run", "crashed"))
    store.rotate("shop", "api-1", "app")
    assert _text(store.read("shop", "api-1", "app", previous=False)) == ["first run", "crashed"]
    store.start("shop", "api-1", "app", ("second run",))
    assert _text(store.read("shop", "api-1", "app", previous=False)) == ["second run"]
    assert _text(store.read("shop", "api-1", "app", previous=True)) == ["first run", "crashed"]


def test_containers_of_a_pod_are_apart_and_forgetting_a_pod_keeps_the_others() -> None:
    store = LogStore()
    store.start("shop", "api-1", "migrate", ("migrated",))
    store.start("shop", "api-1", "app", ("serving",))
    store.start("shop", "api-2", "app", ("serving too",))
    assert store.read("shop", "api-1", "app", previous=True) is None
    assert _text(store.read("shop", "api-1", "migrate", previous=False)) == ["migrated"]
    store.forget("shop", "api-1")
    assert store.read("shop", "api-1", "app", previous=False) is None
    assert _text(store.read("shop", "api-2", "app", previous=False)) == ["serving too"]
