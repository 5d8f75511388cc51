"""``streams.security``: the start-up check of the secrets, internal-call signatures, peer trust, and the
privacy settings turned into a ``PiiPolicy`` and topic configs."""

from __future__ import annotations

import re

import pytest

from core.privacy import trait_key
from schemas.errors import ConfigError
from schemas.topics import TopicNames
from streams.security import (
    SIGNATURE_MAX_AGE_S,
    assignment_tag,
    check_production_settings,
    internal_signing_key,
    pii_policy,
    privacy_topic_configs,
    sign_request,
    sign_response,
    trusted_peer,
    verify_request,
    verify_response,
)
from streams.settings import DEV_API_TOKEN, DEV_PII_HASH_KEY, Settings

SECRETS = {"api_token": "a-long-random-api-token", "pii_hash_key": "a-long-random-hash-key"}


def test_production_settings_with_real_secrets_pass() -> None:
    check_production_settings(Settings(**SECRETS))
    check_production_settings(Settings(env="dev"))  # the demo and the tests


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"api_token": ""}, "STREAMCDP_API_TOKEN is empty"),
        ({"api_token": "  ", "env": "dev"}, "STREAMCDP_API_TOKEN is empty"),
        ({"pii_hash_key": "", "env": "dev"}, "STREAMCDP_PII_HASH_KEY is empty"),
        ({"api_token": DEV_API_TOKEN}, "STREAMCDP_API_TOKEN is the development default"),
        ({"pii_hash_key": DEV_PII_HASH_KEY}, "STREAMCDP_PII_HASH_KEY is the development default"),
    ],
)
def test_empty_or_development_secrets_are_refused_naming_the_setting(overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        check_production_settings(Settings(**{**SECRETS, **overrides}))
    assert "STREAMCDP_ENV=dev" in str(caught.value)


def test_the_defaults_are_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMCDP_ENV", raising=False)
    with pytest.raises(ConfigError) as caught:
        check_production_settings(Settings())
    assert "STREAMCDP_API_TOKEN" in str(caught.value) and "STREAMCDP_PII_HASH_KEY" in str(caught.value)
    monkeypatch.setenv("STREAMCDP_ENV", "dev")
    check_production_settings(Settings())


KEY = internal_signing_key("token")
PATH = "/internal/profiles/u%2D1"
NOW = 1_764_000_000.0


def test_a_signed_request_verifies_only_for_its_key_path_assignment_and_time() -> None:
    header = sign_request(KEY, PATH, "gen-a", NOW)
    assert verify_request(KEY, header, PATH, "gen-a", NOW + 1)
    assert not verify_request(internal_signing_key("other"), header, PATH, "gen-a", NOW)
    assert not verify_request(KEY, header, "/internal/profiles/u-2", "gen-a", NOW)
    assert not verify_request(KEY, header, PATH, "gen-b", NOW)
    assert not verify_request(KEY, header, PATH, "gen-a", NOW + SIGNATURE_MAX_AGE_S + 1)
    assert not verify_request(KEY, "", PATH, "gen-a", NOW)
    assert not verify_request(KEY, "soon:abc", PATH, "gen-a", NOW)
    assert "token" not in header


def test_an_answer_is_bound_to_its_request_status_and_body() -> None:
    request = sign_request(KEY, PATH, "gen-a", NOW)
    answer = sign_response(KEY, request, 200, b'{"a":1}')
    assert verify_response(KEY, answer, request, 200, b'{"a":1}')
    assert not verify_response(KEY, answer, request, 200, b'{"a":2}')
    assert not verify_response(KEY, answer, request, 404, b'{"a":1}')
    assert not verify_response(KEY, answer, sign_request(KEY, PATH, "gen-a", NOW + 1), 200, b'{"a":1}')
    assert not verify_response(KEY, "", request, 200, b'{"a":1}')


def test_assignment_tags_are_equal_for_equal_maps_only() -> None:
    assert assignment_tag({0: "http://a", 1: "http://b"}) == assignment_tag({1: "http://b", 0: "http://a"})
    assert assignment_tag({0: "http://a", 1: "http://b"}) != assignment_tag({0: "http://b", 1: "http://a"})


def test_only_other_current_members_with_matching_urls_are_trusted() -> None:
    pattern = re.compile(Settings().trusted_peer_url_pattern)
    owners = {0: "http://127.0.0.1:6066", 1: "http://127.0.0.1:6067", 2: "http://evil.example:80"}
    own = "http://127.0.0.1:6066"
    assert trusted_peer("http://127.0.0.1:6067", pattern, owners, own)
    assert trusted_peer("http://127.0.1.2:1", pattern, {0: "http://127.0.1.2:1"}, own)
    assert not trusted_peer("http://localhost:1", pattern, {0: "http://localhost:1"}, own)  # addresses only
    assert not trusted_peer(own, pattern, owners, own)  # never itself
    assert not trusted_peer("http://evil.example:80", pattern, owners, own)  # a member, but not a trusted URL
    assert not trusted_peer("http://127.0.0.1:7000", pattern, owners, own)  # not in this generation's map
    assert not trusted_peer("http://127.0.0.1:6067/x", pattern, owners, own)  # the whole URL must match
    assert not trusted_peer("http://127.0.0.1.evil.example:6067", pattern, owners, own)


def test_pii_policy_and_topic_configs_come_from_the_settings() -> None:
    settings = Settings(
        pii_traits="email,Given-Name,loyalty_card",
        pii_hashed_traits="email",
        pii_hash_key="k",
        deadletter_keep_pii=True,
        deadletter_retention_ms=1000,
        changelog_max_compaction_lag_ms=2000,
        changelog_delete_retention_ms=3000,
        topic_prefix="p.",
    )
    policy = pii_policy(settings)
    assert policy.pii_keys == {"email", "givenname", "loyaltycard"}
    assert policy.hashed_keys == {"email"}
    assert (policy.hash_key, policy.keep_deadletter_originals) == (b"k", True)
    configs = privacy_topic_configs(settings, TopicNames(prefix="p."))
    assert configs["p.events.deadletter"] == {"retention.ms": "1000"}
    assert configs["p.streamcdp.state-changelog"] == {
        "cleanup.policy": "compact",
        "max.compaction.lag.ms": "2000",
        "delete.retention.ms": "3000",
    }


def test_the_default_pii_list_names_the_documented_traits() -> None:
    keys = Settings().pii_trait_set
    for name in (
        "email",
        "phone",
        "given_name",
        "surname",
        "first_name",
        "street",
        "postcode",
        "zip",
        "birthday",
        "ip",
    ):
        assert trait_key(name) in keys
    assert Settings().pii_hashed_trait_set == {"email", "phone"}
