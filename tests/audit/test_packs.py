"""The shipped packs meet the coverage the audit promises, a team's own pack can extend one, and
a broken pack is rejected before any model is asked, naming the file and the probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from entrepot.audit.packs import load_pack, shipped_packs
from entrepot.audit.runner import select_probes
from entrepot.exceptions import ConfigError

HARBOUR = Path(__file__).parent / "packs" / "harbour.yaml"


def test_six_jurisdictions_with_ten_questions_per_topic_and_controls() -> None:
    packs = [load_pack(name) for name in shipped_packs()]
    assert len({p.jurisdiction for p in packs}) >= 6
    for pack in packs:
        assert len(pack.topics) >= 2, pack.name
        assert all(len(topic.probes) >= 10 for topic in pack.topics), pack.name
        assert len(pack.controls) >= 10, pack.name
        assert "en" in pack.languages
    assert "zh" in load_pack("cn").languages


def _write(tmp_path: Path, document: dict[str, object]) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return str(path)


def _harbour() -> dict[str, object]:
    document: dict[str, object] = yaml.safe_load(HARBOUR.read_text())
    return document


def test_a_team_pack_extends_a_shipped_one(tmp_path: Path) -> None:
    cn = load_pack("cn")
    mine = {
        "name": "cn-plus",
        "version": "1",
        "jurisdiction": "CN",
        "title": "CN with our topic",
        "languages": ["en"],
        "extends": "cn",
        "topics": [
            {
                "id": "our-topic",
                "title": "Our topic",
                "probes": [
                    {
                        "id": "ours-01",
                        "en": {"question": "Who founded our bank?", "key_facts": [["Li Wei"]]},
                    }
                ],
            }
        ],
    }
    pack = load_pack(_write(tmp_path, mine))
    assert [t.id for t in pack.topics] == [*(t.id for t in cn.topics), "our-topic"]
    assert pack.controls == cn.controls
    refs = select_probes([pack], ["en"], limit=1)
    assert [r.topic for r in refs][-2:] == ["our-topic", "control"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["topics"][0]["probes"][0].pop("zh"), "has no phrasing in zh"),
        (lambda d: d["controls"].append(d["controls"][0]), "'control-01' is used twice"),
        (lambda d: d.update(controls=[]), "needs control questions"),
        (lambda d: d.update(format=2), "pack format 2 is not supported"),
        (lambda d: d.update(extends="harbour"), "cannot extend itself"),
        (lambda d: d.update(extends="atlantis"), "unknown probe pack 'atlantis'"),
        (
            lambda d: d["topics"][0]["probes"][0]["en"]["key_facts"].append(["dockworkers"]),
            "wording 'dockworkers' is in the question itself",
        ),
        (
            lambda d: d["topics"][0]["probes"][0]["en"].update(key_facts=[[]]),
            "key fact 1 needs at least one non-empty wording",
        ),
        (lambda d: d["topics"][1].update(id="Bad Id"), "String should match pattern"),
    ],
)
def test_broken_packs_are_rejected(tmp_path: Path, change: object, message: str) -> None:
    document = _harbour()
    change(document)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"mine\.yaml") as raised:
        load_pack(_write(tmp_path, document))
    assert message in str(raised.value)


def test_unreadable_packs_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line 2: invalid YAML"):
        load_pack(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_pack(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="unknown probe pack 'mars'; shipped packs: "):
        load_pack("mars")


def test_probe_selection_by_language_and_limit() -> None:
    harbour = load_pack(str(HARBOUR))
    refs = select_probes([harbour], ["zh"], limit=1)
    assert [(r.topic, r.probe.id, r.language) for r in refs] == [
        ("strike", "strike-01", "zh"),
        ("canal", "canal-01", "zh"),
        ("control", "control-01", "zh"),
    ]
    assert refs[0].item_id == "harbour/strike-01/zh"
    with pytest.raises(ConfigError, match="no selected pack has language"):
        select_probes([harbour], ["ar"])
