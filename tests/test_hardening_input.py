"""Hostile input the fuzz battery found: each is a clear 400 naming the field, never a 500."""

from __future__ import annotations

import pytest

from conftest import ADMIN_PASSWORD

ADMIN = {"Authorization": f"Bearer {ADMIN_PASSWORD}"}


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


@pytest.mark.parametrize("page", ["99999999999999999999", "92233720368547758", "1000000001"])
def test_a_page_past_any_offset_is_a_400_naming_page(client, page):
    for response in (
        client.get(f"/api/get-grok-list?page={page}", headers=ADMIN),
        client.post("/api/get-grok-list", json={"page": int(page)}, headers=ADMIN),
    ):
        error = error_of(response, 400)
        assert error["param"] == "page" and "page" in error["message"]


def test_the_last_allowed_page_is_an_empty_page(client):
    response = client.get("/api/get-grok-list?page=1000000000&page_size=100", headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"] == []
