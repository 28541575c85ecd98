from tests.support import ApiClient


def test_health_needs_no_key(api: ApiClient) -> None:
    reply = api.get("/health", key=None)
    assert reply.status == 200
    assert reply.body == {"status": "ok", "stage": "test"}
    assert reply.headers["x-request-id"]
