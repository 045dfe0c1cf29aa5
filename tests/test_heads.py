import json

import pytest

from headrank.engine.heads import HeadSet, HeadSetMismatchError


def test_round_trip_and_order(tmp_path):
    hs = HeadSet(heads=((16, 2), (14, 0), (16, 1)), num_layers=30, num_heads=9, model="m", prompt={"max_passage_tokens": 64})
    assert hs.heads == ((14, 0), (16, 1), (16, 2)) and hs.deepest_layer == 16
    assert hs.by_layer() == {14: [0], 16: [1, 2]}
    path = tmp_path / "h.json"
    hs.save(path)
    assert HeadSet.load(path) == hs
    assert json.loads(path.read_text())["format"] == "headrank.headset/1"


def test_coerce_and_bare_list(tmp_path):
    path = tmp_path / "h.json"
    path.write_text("[[3, 1], [2, 0]]")
    assert HeadSet.coerce(path).heads == ((2, 0), (3, 1))
    assert HeadSet.coerce([(1, 1)]).heads == ((1, 1),)
    assert HeadSet.all_heads(2, 3).heads == ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2))


@pytest.mark.parametrize(
    "heads, match",
    [((), "at least one"), (((1, 1), (1, 1)), "twice"), ((("a", 1),), "integers"), (((1,),), "pair"), ((5,), "pair")],
)
def test_invalid_heads(heads, match):
    with pytest.raises(ValueError, match=match):
        HeadSet(heads=heads)


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        HeadSet.load(bad)
    bad.write_text('{"layers": []}')
    with pytest.raises(ValueError, match="'heads' list"):
        HeadSet.load(bad)
    bad.write_text('{"format": "other/9", "heads": [[1, 1]]}')
    with pytest.raises(ValueError, match="unsupported head set format"):
        HeadSet.load(bad)
    with pytest.raises(FileNotFoundError):
        HeadSet.load(tmp_path / "missing.json")


def test_check_model():
    HeadSet(heads=((29, 8),)).check_model(30, 9)
    with pytest.raises(HeadSetMismatchError):
        HeadSet(heads=((30, 0),)).check_model(30, 9)
    with pytest.raises(HeadSetMismatchError, match="24 layers x 14 heads"):
        HeadSet(heads=((1, 1),), num_layers=24, num_heads=14).check_model(30, 9)


def test_weights_follow_their_heads_through_sorting_and_files(tmp_path):
    hs = HeadSet(heads=((16, 2), (14, 0), (16, 1)), weights=(0.5, 2.0, 0.0))
    assert hs.heads == ((14, 0), (16, 1), (16, 2)) and hs.weights == (2.0, 0.0, 0.5)
    assert hs.weight_of() == {(14, 0): 2.0, (16, 1): 0.0, (16, 2): 0.5}
    path = tmp_path / "w.json"
    hs.save(path)
    assert HeadSet.load(path) == hs and json.loads(path.read_text())["weights"] == [2.0, 0.0, 0.5]
    plain = HeadSet(heads=((1, 1),))
    plain.save(path)
    assert "weights" not in json.loads(path.read_text()) and plain.weight_of() is None


@pytest.mark.parametrize("weights, match", [((1.0,), "2 heads"), ((1.0, -0.1), ">= 0"), ((1.0, float("nan")), "finite"),
                                            ((0, 0), "all zero"), ("12", "list of numbers"), ((True, 1.0), "numbers"),
                                            ((1.0, "2"), "numbers")])
def test_invalid_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        HeadSet(heads=((1, 1), (2, 2)), weights=weights)
