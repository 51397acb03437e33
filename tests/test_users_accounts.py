"""Users as the admin sees them: `get-grok-list` counts the users each account serves."""

from __future__ import annotations

from conftest import md5_of

TOKENS = ["emu-count-account-0001", "emu-count-account-0002", "emu-count-account-0003"]


def users_by_md5(client, headers) -> dict[str, int]:
    response = client.post("/api/get-grok-list", json={"page_size": 100}, headers=headers)
    assert response.status_code == 200
    return {row["email_md5"]: row["users"] for row in response.get_json()["data"]}


def test_account_list_counts_the_users_of_each_account(emu_app, add_accounts, admin_headers):
    app = emu_app()
    add_accounts(app, TOKENS)
    client = app.test_client()

    def login(name, token):
        body = {"user_name": name, "email_md5": md5_of(token)}
        assert client.post("/api/login", json=body, headers=admin_headers).status_code == 200

    for name in ("a", "b", "c"):
        login(name, TOKENS[0])
    login("d", TOKENS[1])
    assert users_by_md5(client, admin_headers) == {
        md5_of(TOKENS[0]): 3,
        md5_of(TOKENS[1]): 1,
        md5_of(TOKENS[2]): 0,
    }
    # Moving a user moves the count; logging in again does not count twice.
    login("c", TOKENS[2])
    login("d", TOKENS[1])
    assert users_by_md5(client, admin_headers) == {
        md5_of(TOKENS[0]): 2,
        md5_of(TOKENS[1]): 1,
        md5_of(TOKENS[2]): 1,
    }
    # Deleting an account unbinds its users; they count nowhere.
    gone = {"email_md5_list": [md5_of(TOKENS[0])]}
    deleted = client.post("/api/delete-grok-token", json=gone, headers=admin_headers)
    assert deleted.status_code == 200
    assert users_by_md5(client, admin_headers) == {md5_of(TOKENS[1]): 1, md5_of(TOKENS[2]): 1}
