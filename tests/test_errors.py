"""Every error on every route is the one JSON shape, never HTML, never a traceback."""

from __future__ import annotations

import pytest


def assert_error_shape(response, status, error_type):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    assert error["type"] == error_type
    assert error["message"]
    return error


def test_unknown_route_is_a_json_404(client):
    response = client.get("/v1/nothing-here")
    error = assert_error_shape(response, 404, "not_found_error")
    assert error["code"] == "not_found"
    assert response.headers["x-should-retry"] == "false"


def test_wrong_method_is_a_json_405_naming_the_allowed_ones(client):
    response = client.delete("/healthz")
    error = assert_error_shape(response, 405, "invalid_request_error")
    assert "GET" in error["message"]
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_a_json_413(make_app):
    app = make_app(MAX_REQUEST_BYTES=1024)

    @app.post("/echo-size")
    def echo_size():
        from flask import request

        return {"size": len(request.get_data())}

    response = app.test_client().post("/echo-size", data=b"x" * 4096)
    assert_error_shape(response, 413, "request_too_large")


def test_unexpected_exception_is_a_json_500_without_traceback(make_app, caplog):
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    error = assert_error_shape(response, 500, "server_error")
    body = response.get_data(as_text=True)
    assert "secret internals" not in body and "Traceback" not in body
    assert error["code"] == "internal_error"
    assert "secret internals" in caplog.text  # the operator still sees it in the log


@pytest.mark.parametrize("path", ["/", "/v1", "/api/unknown"])
def test_no_route_ever_answers_html(client, path):
    response = client.get(path)
    assert response.mimetype == "application/json"
    assert "<html" not in response.get_data(as_text=True).lower()
