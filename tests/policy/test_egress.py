"""EgressPolicy: a request's class only ever rises, and every rule at or below it binds."""

from __future__ import annotations

import pytest

from entrepot.config import JurisdictionRule, ModelConfig, PolicyConfig, TeamConfig
from entrepot.exceptions import InvalidRequestError, PermissionDeniedError
from entrepot.policy.egress import EgressPolicy, Verdict

BUNDLED = ModelConfig(
    alias="local/smollm", provider="llama_cpp", target="bundled:smollm", name="bundled"
)
LOOPBACK = ModelConfig(
    alias="llama",
    provider="openai_compatible",
    target="llama-3",
    base_url="http://127.0.0.1:8081/v1",
    name="vllm-here",
)
DEEPSEEK = ModelConfig(
    alias="deepseek-v3",
    provider="openai_compatible",
    target="deepseek-chat",
    base_url="https://api.deepseek.com/v1",
    jurisdiction="CN",
    name="deepseek-api",
)
OPENAI = ModelConfig(
    alias="gpt",
    provider="openai_compatible",
    target="gpt-4o",
    base_url="https://api.openai.com/v1",
    jurisdiction="US",
    name="openai-us",
)
UNLABELLED = ModelConfig(
    alias="mystery", provider="openai_compatible", target="m", base_url="https://m.example/v1"
)

TEAMS = {
    "research": TeamConfig(rule=JurisdictionRule(deny=["CN"])),
    "legal": TeamConfig(data_class="confidential"),
    "eu-only": TeamConfig(rule=JurisdictionRule(allow=["EU", "local"])),
}


def policy(**overrides: object) -> EgressPolicy:
    return EgressPolicy(PolicyConfig.model_validate(overrides), TEAMS)


def classify(
    egress: EgressPolicy,
    *,
    key_class: str | None = None,
    team: str | None = None,
    header: str | None = None,
    findings: dict[str, int] | None = None,
) -> str:
    return egress.classify(key_class=key_class, team=team, header=header, findings=findings or {})


def test_default_class_applies_when_nobody_says_otherwise() -> None:
    assert classify(policy()) == "internal"
    assert classify(policy(default_class="public")) == "public"


def test_the_most_sensitive_claim_wins() -> None:
    egress = policy(default_class="public")
    assert classify(egress, key_class="internal") == "internal"
    assert classify(egress, team="legal") == "confidential"
    assert classify(egress, team="legal", key_class="public", header="public") == "confidential"


def test_header_may_raise_the_class() -> None:
    assert classify(policy(), header="confidential") == "confidential"
    assert classify(policy(), header=" Confidential ") == "confidential"


def test_header_cannot_lower_the_class() -> None:
    assert classify(policy(), key_class="confidential", header="public") == "confidential"
    assert classify(policy(), header="public") == "internal"


def test_unknown_header_class_is_a_400_listing_the_declared_classes() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        classify(policy(), header="top-secret")
    assert caught.value.status_code == 400
    assert caught.value.param == "x-entrepot-data-class"
    assert "public, internal, confidential" in caught.value.message


def test_blank_header_counts_as_absent() -> None:
    assert classify(policy(), header="  ") == "internal"


def test_unknown_key_class_and_unknown_team_contribute_nothing() -> None:
    assert classify(policy(), key_class="galactic", team="nobody") == "internal"


def test_findings_raise_to_the_configured_class() -> None:
    assert classify(policy(), findings={"email": 1}) == "confidential"
    egress = policy(classes=["public", "internal", "confidential", "secret"])
    assert classify(egress, findings={"api_key": 2}) == "confidential"
    raised = policy(detector={"raises_to": "internal"}, default_class="public")
    assert classify(raised, findings={"email": 1}) == "internal"
    assert classify(raised, findings={}) == "public"


def check(
    egress: EgressPolicy,
    deployment: ModelConfig,
    data_class: str = "internal",
    team: str | None = None,
    offline: bool = False,
) -> Verdict:
    return egress.check(data_class=data_class, team=team, deployment=deployment, offline=offline)


def test_by_default_confidential_data_stays_local() -> None:
    egress = policy()
    assert check(egress, BUNDLED, "confidential").allowed
    assert check(egress, LOOPBACK, "confidential").allowed
    verdict = check(egress, DEEPSEEK, "confidential")
    assert verdict == Verdict(
        False, "data class 'confidential' allows only [local]; deployment 'deepseek-api' is in CN"
    )


def test_less_sensitive_classes_go_anywhere_by_default() -> None:
    verdict = check(policy(), DEEPSEEK, "internal")
    assert verdict == Verdict(True, "allowed: data class 'internal' permits CN")


def test_a_remote_deployment_labelled_local_is_not_local() -> None:
    verdict = check(policy(), UNLABELLED, "confidential")
    assert not verdict.allowed
    assert "deployment 'openai_compatible:mystery' is remote" in verdict.reason


def test_the_declared_jurisdiction_decides_locality() -> None:
    on_premises = ModelConfig(
        alias="lan",
        provider="openai_compatible",
        target="m",
        base_url="http://10.0.0.5/v1",
        jurisdiction="local",
        name="on-prem",
    )
    us_proxy = ModelConfig(
        alias="proxy",
        provider="openai_compatible",
        target="m",
        base_url="http://127.0.0.1:9000/v1",
        jurisdiction="US",
        name="us-proxy",
    )
    assert check(policy(), on_premises, "confidential").allowed
    assert check(policy(), us_proxy, "confidential").reason == (
        "data class 'confidential' allows only [local]; deployment 'us-proxy' is in US"
    )
    assert not check(policy(), on_premises, "public", offline=True).allowed


def test_a_rule_binds_every_more_sensitive_class() -> None:
    egress = policy(
        rules={
            "internal": {"deny": ["cn"]},
            "confidential": {"allow": ["local", "CN", "US"]},
        }
    )
    assert check(egress, DEEPSEEK, "public").allowed
    assert check(egress, DEEPSEEK, "internal").reason == (
        "data class 'internal' denies [cn]; deployment 'deepseek-api' is in CN"
    )
    assert check(egress, DEEPSEEK, "confidential").reason == (
        "data class 'internal' denies [cn]; deployment 'deepseek-api' is in CN"
    )
    assert check(egress, OPENAI, "confidential").allowed


def test_the_most_sensitive_failing_rule_is_reported() -> None:
    egress = policy(rules={"internal": {"deny": ["CN"]}, "confidential": {"allow": ["local"]}})
    assert check(egress, DEEPSEEK, "confidential").reason.startswith(
        "data class 'confidential' allows only [local]"
    )


def test_team_rules_apply_after_class_rules() -> None:
    egress = policy()
    assert check(egress, DEEPSEEK, team="research") == Verdict(
        False, "team 'research' denies [CN]; deployment 'deepseek-api' is in CN"
    )
    assert check(egress, OPENAI, team="research").allowed
    assert check(egress, OPENAI, team="eu-only").reason == (
        "team 'eu-only' allows only [EU, local]; deployment 'openai-us' is in US"
    )
    assert check(egress, BUNDLED, team="eu-only").allowed
    assert check(egress, DEEPSEEK, team="nobody").allowed


@pytest.mark.parametrize("from_config", [False, True])
def test_offline_admits_only_local_deployments(from_config: bool) -> None:
    egress = policy(offline=from_config, rules={})
    offline = not from_config
    assert check(egress, BUNDLED, "public", offline=offline).allowed
    assert check(egress, LOOPBACK, "public", offline=offline).allowed
    assert check(egress, OPENAI, "public", offline=offline) == Verdict(
        False, "offline mode admits only local deployments; 'openai-us' is remote (US)"
    )


def test_blocked_error_is_a_403_naming_every_refusal() -> None:
    egress = policy()
    refusals = [
        (d.deployment, check(egress, d, "confidential", team="research"))
        for d in (DEEPSEEK, OPENAI)
    ]
    error = egress.blocked_error("deepseek-v3", "confidential", refusals)
    assert isinstance(error, PermissionDeniedError)
    assert (error.status_code, error.code, error.param) == (403, "egress_denied", "model")
    assert error.message == (
        "no deployment of 'deepseek-v3' may receive data of class 'confidential': "
        "deepseek-api: data class 'confidential' allows only [local]; "
        "deployment 'deepseek-api' is in CN; "
        "openai-us: data class 'confidential' allows only [local]; deployment 'openai-us' is in US"
    )
    assert error.excluded == tuple((name, verdict.reason) for name, verdict in refusals)


def test_blocked_error_without_candidates_still_explains_itself() -> None:
    error = policy().blocked_error("gpt", "internal", [])
    assert error.message == "no deployment of 'gpt' may receive data of class 'internal'"
