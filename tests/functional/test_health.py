from tests.support import ApiClient


def test_health_needs_no_key(api: ApiClient) -> None:
    reply = api.get("/health", key=None)
    assert reply.status == 200
    assert reply.body == {"status": "ok", "stage": "test"}
    assert reply.headers["x-request-id"]


def test_a_route_that_reads_no_body_ignores_the_content_type(api: ApiClient) -> None:
    """No route answers a status its document does not declare: a GET sent with an odd Content-Type
    is still a GET (routes that read a body keep answering 415 to a type they do not take)."""
    reply = api.get("/health", key=None, headers={"Content-Type": "text/plain"})
    assert reply.status == 200 and reply.body["status"] == "ok"
    refused = api.post("/v1/programs", {"name": "x"}, headers={"Content-Type": "text/plain"})
    assert refused.status == 415 and refused.body["error"]["code"] == "unsupported_media_type"
