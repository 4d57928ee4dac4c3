from SpineSegDiffLib.labels import BACKGROUND, NUM_CLASSES, STRUCTURES, by_key, by_value


def test_values_are_consecutive_after_background():
    assert BACKGROUND == 0
    assert [s.value for s in STRUCTURES] == list(range(1, NUM_CLASSES))


def test_keys_names_colours_are_unique_and_valid():
    assert len({s.key for s in STRUCTURES}) == len({s.name for s in STRUCTURES}) == len(STRUCTURES)
    assert len({s.color for s in STRUCTURES}) == len(STRUCTURES)
    assert all(0 <= c <= 1 for s in STRUCTURES for c in s.color)
    assert [s.key for s in STRUCTURES] == ["SC", "VB", "IVD"]


def test_lookup_both_ways():
    for s in STRUCTURES:
        assert by_value(s.value) is s and by_key(s.key) is s


def test_terminology_entries_have_slicer_shape():
    for s in STRUCTURES:
        parts = s.terminology.split("~")
        assert len(parts) == 7
        assert parts[2] == f"{s.coding_scheme}^{s.code}^{s.meaning}"
