"""Rotation and health rules of the pool, one process (the multi-process test is elsewhere)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from grokproxy import pool
from grokproxy.errors import NoAccount, RateLimited
from grokproxy.extensions import db
from grokproxy.models import Account, AccountStatus, utcnow


@pytest.fixture
def accounts(add_accounts):
    """Factory: `accounts(app, n)` adds n pool accounts, returns their ids in order."""
    return lambda app, n: add_accounts(app, [f"tok-{i}-" + "x" * 20 for i in range(n)])


def test_picks_rotate_evenly(app, accounts):
    ids = accounts(app, 3)
    with app.app_context():
        used = Counter(pool.pick_account().account_id for _ in range(9))
    assert used == Counter({i: 3 for i in ids})


def test_pick_returns_the_decrypted_token_and_never_shows_it(app, accounts):
    accounts(app, 1)
    with app.app_context():
        lease = pool.pick_account()
    assert lease.token.startswith("tok-0-")
    assert lease.token not in repr(lease)


def test_cooling_account_is_skipped_and_returns_after_its_cooldown(app, accounts):
    first, second = accounts(app, 2)
    with app.app_context():
        pool.mark_cooling(first, 60, "rate limited")
        assert {pool.pick_account().account_id for _ in range(4)} == {second}
        db.session.execute(
            db.update(Account)
            .where(Account.id == first)
            .values(cooldown_until=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
        assert first in {pool.pick_account().account_id for _ in range(2)}
        assert db.session.get(Account, first).status == AccountStatus.ACTIVE


def test_all_cooling_is_a_429_with_retry_after(app, accounts):
    (only,) = accounts(app, 1)
    with app.app_context():
        pool.mark_cooling(only, 120, "rate limited")
        with pytest.raises(RateLimited) as info:
            pool.pick_account()
    assert 100 <= info.value.retry_after <= 121


def test_invalid_accounts_leave_a_503_that_says_so(app, accounts):
    (only,) = accounts(app, 1)
    with app.app_context():
        pool.mark_invalid(only, "code 16")
        with pytest.raises(NoAccount, match="1 invalid"):
            pool.pick_account()


def test_empty_pool_says_how_to_fill_it(app):
    with app.app_context(), pytest.raises(NoAccount, match="batch-add"):
        pool.pick_account()


def test_exhausted_mode_quota_is_skipped_until_its_reset(app, accounts):
    first, second = accounts(app, 2)
    reset = (utcnow() + timedelta(minutes=5)).isoformat()
    with app.app_context():
        pool.store_quota(first, "heavy", {"remaining": 0, "total": 20, "reset_at": reset})
        assert {pool.pick_account("heavy").account_id for _ in range(3)} == {second}
        assert first in {pool.pick_account("fast").account_id for _ in range(2)}


def test_claim_explains_an_unusable_account(app, accounts):
    (only,) = accounts(app, 1)
    with app.app_context():
        pool.mark_cooling(only, 60, "rate limited")
        with pytest.raises(RateLimited, match="returns in"):
            pool.claim_account(only, who="your account")
        pool.mark_invalid(only, "code 16")
        with pytest.raises(NoAccount, match="invalid"):
            pool.claim_account(only, who="your account")
        with pytest.raises(NoAccount, match="deleted"):
            pool.claim_account(only + 100, who="your account")
