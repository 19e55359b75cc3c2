"""The "delete" permission action: v3's topic delete asks for "delete", which "create" no
longer stands for (a principal that may make topics is not trusted to destroy them);
"*" grants it; a config file names it like any other action."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pykaf.broker import BlockingCluster
from pykaf.gateway import GatewaySettings, SecuritySettings, create_app, load_config
from pykaf.gateway._security import Security

PERMISSIONS = {
    "maker": {"team-*": ["create", "describe"]},
    "keeper": {"team-*": ["create", "delete"]},
    "admin": {"*": ["*"]},
}


async def test_v3_delete_needs_the_delete_action_not_create(kafka: BlockingCluster) -> None:
    security = SecuritySettings(
        tokens={"t-maker": "maker", "t-keeper": "keeper", "t-admin": "admin"},
        permissions=PERMISSIONS,
    )
    app = create_app(GatewaySettings(bootstrap=kafka.bootstrap, security=security))
    transport = httpx.ASGITransport(app=app)

    def client(token: str) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {token}"}
        return httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers)

    maker, keeper, admin = client("t-maker"), client("t-keeper"), client("t-admin")
    try:
        cid = (await admin.get("/v3/clusters")).json()["data"][0]["cluster_id"]
        topics = f"/v3/clusters/{cid}/topics"
        for name in ("team-a", "team-b"):
            created = await maker.post(topics, json={"topic_name": name, "partitions_count": 1})
            assert created.status_code == 201, created.text
        # "create" alone: the topic it made stays.
        refused = await maker.delete(f"{topics}/team-a")
        assert refused.status_code == 403, refused.text
        assert refused.json() == {
            "error_code": 40301,
            "message": "principal 'maker' may not delete topic 'team-a'",
        }
        assert (await admin.get(f"{topics}/team-a")).status_code == 200
        assert app.security.rejected["forbidden"] == 1
        # "delete" on the pattern, and "*" (every action): deleted.
        assert (await keeper.delete(f"{topics}/team-a")).status_code == 204
        assert (await admin.delete(f"{topics}/team-b")).status_code == 204
        assert (await admin.get(f"{topics}/team-a")).status_code == 404
        # "delete" is on the pattern only.
        assert (await keeper.delete(f"{topics}/events")).status_code == 403
    finally:
        for each in (maker, keeper, admin):
            await each.aclose()
        await app.close(5)


def test_star_and_the_defaults_grant_delete_and_create_does_not() -> None:
    security = Security(SecuritySettings(tokens={"t": "p"}, permissions=PERMISSIONS))
    assert not security.may("maker", "delete", "team-x")
    assert security.may("keeper", "delete", "team-x")
    assert not security.may("keeper", "delete", "other")
    assert security.may("admin", "delete", "anything")
    # No permissions configured: every authenticated principal may do everything;
    # nothing configured at all: anonymous may too (loopback).
    assert Security(SecuritySettings(tokens={"t": "p"})).may("p", "delete", "x")
    assert Security(SecuritySettings()).may(None, "delete", "x")
    # anonymous_permissions with "*" covers delete as well.
    anonymous = SecuritySettings(allow_anonymous=True, anonymous_permissions={"tmp-*": ["*"]})
    assert Security(anonymous).may(None, "delete", "tmp-1")


def test_a_config_file_grants_delete_and_a_typo_lists_the_actions(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        'bootstrap = "k:9092"\n'
        "[security]\n"
        'tokens = { "t" = "platform" }\n'
        "[security.permissions]\n"
        'platform = { "team-*" = ["create", "delete", "describe"] }\n'
    )
    settings, _ = load_config(path)
    security = Security(settings.security)
    assert security.may("platform", "delete", "team-1")
    assert not security.may("platform", "produce", "team-1")
    path.write_text(path.read_text().replace('"delete"', '"remove"'))
    with pytest.raises(ValueError, match="use produce, describe, create, delete or '\\*'"):
        load_config(path)
