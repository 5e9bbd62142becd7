import pytest

from corral.observability import TraceRecord, TraceStore

from .helpers import Captured, chat_info, trace_record


def _ids(records: list[TraceRecord]) -> list[int]:
    return [int(r.trace_id, 16) for r in records]


@pytest.fixture
def store() -> TraceStore:
    store = TraceStore(100)
    store.append(trace_record(1))
    store.append(trace_record(2, team="ads"))
    store.append(trace_record(3, endpoint="embed", operation="embeddings"))
    store.append(trace_record(4, status=429))
    store.append(trace_record(5, status=200, error="stream_cut"))
    store.append(trace_record(6, team="ads", endpoint="embed"))
    return store


def test_queries_filter_by_endpoint_team_time_and_status_newest_first(store: TraceStore) -> None:
    assert _ids(store.query()) == [6, 5, 4, 3, 2, 1]
    assert _ids(store.query(endpoint="embed")) == [6, 3]
    assert _ids(store.query(team="ads")) == [6, 2]
    assert _ids(store.query(team="ads", endpoint="embed")) == [6]
    assert _ids(store.query(since=1002.0, until=1005.0)) == [4, 3, 2]
    assert _ids(store.query(status=429)) == [4]
    assert _ids(store.query(failed=True)) == [5, 4]
    assert _ids(store.query(failed=False, team="search")) == [3, 1]
    assert _ids(store.query(limit=2)) == [6, 5]
    assert store.query(team="nobody") == []


def test_lookup_by_trace_id(store: TraceStore) -> None:
    assert store.get(f"{3:032x}") == trace_record(3, endpoint="embed", operation="embeddings")
    assert store.get("f" * 32) is None


def test_the_store_keeps_only_the_newest_records() -> None:
    store = TraceStore(3)
    for n in range(1, 8):
        store.append(trace_record(n))
    assert len(store) == store.capacity == 3
    assert _ids(store.query()) == [7, 6, 5]


def test_bad_queries_and_capacities_say_what_is_wrong(store: TraceStore) -> None:
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        store.query(limit=0)
    with pytest.raises(ValueError, match=r"until \(5.0\) is before since \(9.0\)"):
        store.query(since=9.0, until=5.0)
    with pytest.raises(ValueError, match="capacity must be an integer >= 1, got 0"):
        TraceStore(0)


def test_finished_requests_land_in_the_store_with_their_facts(captured: Captured) -> None:
    request = captured.telemetry.start(chat_info(stream=True, policy="p1"))
    request.first_chunk()
    request.usage(3, 4)
    request.response("llama", ["length"])
    request.cost(0.5)
    request.set_policy("p2")
    record = request.finish(200)

    [stored] = captured.telemetry.store.query(endpoint="chat", team="search")
    assert stored is record
    assert stored._replace(
        trace_id="", started_at=0.0, duration_s=0.0, time_to_first_chunk_s=0.0
    ) == trace_record(
        0,
        trace_id="",
        started_at=0.0,
        duration_s=0.0,
        time_to_first_chunk_s=0.0,
        policy="p2",
        response_model="llama",
        server_address="upstream.local",
        stream=True,
        max_tokens=64,
        temperature=0.2,
        input_tokens=3,
        output_tokens=4,
        finish_reasons=("length",),
        cost_usd=0.5,
    )
    assert stored.to_dict()["finish_reasons"] == ["length"]
