"""The keyword baseline flags the phrases it lists, and only those."""
from refusal_predictor.keywords import NO_REFUSAL_LIGHT_PHRASES, KeywordRefusalDetector


def test_keyword_detector():
    kw = KeywordRefusalDetector()
    assert len(NO_REFUSAL_LIGHT_PHRASES) == 28
    assert list(kw.predict(["I\u2019m sorry, I can\u2019t assist with that.", "Here is the recipe.", ""])) == [
        "refusal", "compliance", "compliance"]
    proba = kw.predict_proba(["I cannot do that"])
    assert proba.shape == (1, 2) and proba[0, 1] == 1.0
    assert kw.matches("As an AI language model") == ["As an", "As an AI"]
    assert kw.flags(["I cannot do that", "Here is the recipe.", ""]).tolist() == [True, False, False]
    assert kw.flags([]).shape == (0,) and kw.predict_proba([]).shape == (0, 2)


def test_curly_apostrophes_match_the_straight_phrases():
    kw = KeywordRefusalDetector()
    assert kw.matches("I can\u2019t assist with that.") == ["I can't assist"]
    assert KeywordRefusalDetector(["won\u2019t"]).flags(["I won't.", "I WON\u2019T."]).tolist() == [True, True]
