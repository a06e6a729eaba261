"""The comparison on its own: the similarity measure, and the substitution rule on answers made
up for the purpose (the end-to-end tests use a fake host and the bundled model)."""

from __future__ import annotations

from entrepot.fingerprint.compare import MIN_MARGIN, compare, similarity
from entrepot.store.fingerprints import StoredAnswer

TEXTS = {
    "a": "The lighthouse keeper turned the key and the old door opened onto the sea.",
    "b": "Paris is the capital of France, and the train leaves at seven.",
    "c": "Seventeen times twenty-three is three hundred and ninety-one.",
}


def _sample(texts: dict[str, str], tokens: int = 10) -> dict[str, StoredAnswer]:
    return {
        canary: StoredAnswer(0, canary, text, tokens, len(text.split()), None, "stop")
        for canary, text in texts.items()
    }


def test_similarity_is_one_for_the_same_text_and_low_for_another() -> None:
    assert similarity(TEXTS["a"], "  " + TEXTS["a"].replace(" ", "\n", 2)) == 1.0
    assert similarity(TEXTS["a"], TEXTS["b"]) < 0.2
    one_word = TEXTS["a"].replace("old", "oak")
    assert 0.8 < similarity(TEXTS["a"], one_word) < 1.0


def test_answers_that_match_are_within_the_floor() -> None:
    same = [_sample(TEXTS), _sample(TEXTS)]
    found = compare(same, same)
    assert not found.substituted
    assert (found.exact_share, found.floor, found.margin) == (1.0, 1.0, MIN_MARGIN)


def test_another_model_is_flagged_and_so_is_a_changed_tokenizer() -> None:
    take = [_sample(TEXTS), _sample(TEXTS)]
    other = {canary: text[::-1] for canary, text in TEXTS.items()}
    found = compare(take, [_sample(other), _sample(other)])
    assert found.substituted and found.shortfall > 0.5
    retokenized = compare(take, [_sample(TEXTS, tokens=12), _sample(TEXTS, tokens=12)])
    assert retokenized.substituted and retokenized.tokens_changed == len(TEXTS)
    assert retokenized.exact_share == 1.0
