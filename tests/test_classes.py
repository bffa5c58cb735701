import numpy as np
import pytest

from tinygan import classes
from tinygan.errors import TinyGANError


def test_table_is_the_sorted_ilsvrc_list():
    w = classes.wnids()
    assert len(w) == 1000 and len(set(w)) == 1000
    assert w == sorted(w)
    assert w[0] == "n01440764" and w[397] == "n02655020" and w[999] == "n15075141"
    assert all(len(x) == 9 and x[0] == "n" and x[1:].isdigit() for x in w)


@pytest.mark.parametrize("name,index", [
    ("tench", 0), ("goldfish", 1), ("ostrich", 9), ("flamingo", 130), ("golden retriever", 207),
    ("tabby", 281), ("lion", 291), ("monarch", 323), ("giant panda", 388), ("puffer", 397),
    ("abacus", 398), ("toilet tissue", 999),
])
def test_known_indices(name, index):
    assert classes.name_of(index) == name
    assert classes.index_of(classes.wnid_of(index)) == index


def test_index_of_and_wnid_of():
    assert classes.index_of("n01443537") == 1
    assert classes.wnid_of(130) == "n02007558"
    assert classes.is_wnid("n01440764") and not classes.is_wnid("n00000000")


def test_animals():
    assert classes.ANIMALS == range(398)
    assert classes.resolve("animals") == list(range(398))
    assert classes.resolve("all") == list(range(1000))


def test_resolve_mixed_list_sorted_unique():
    assert classes.resolve([207, "n01443537", 1, np.int64(9), "130"]) == [1, 9, 130, 207]


@pytest.mark.parametrize("bad,shown", [
    ([1, 1000], "1000"), ([-1], "-1"), (["n99999999"], "n99999999"), (["goldfish"], "goldfish"),
    ([1.5], "1.5"), ([True], "True"), ("some", "some"), ([], "empty"),
])
def test_resolve_errors_name_the_entry(bad, shown):
    with pytest.raises(TinyGANError, match=shown):
        classes.resolve(bad)


def test_lookup_errors():
    with pytest.raises(TinyGANError, match="n123"):
        classes.index_of("n123")
    with pytest.raises(TinyGANError, match="1000"):
        classes.name_of(1000)


def test_resolve_warns_about_classes_listed_twice(capsys):
    # 1 twice (as an int and as its wnid), 9 twice (int and string), 130 once: used once each, one warning line.
    assert classes.resolve([9, 1, "n01443537", "9", 130]) == [1, 9, 130]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: classes listed twice:")
    assert "1 (n01443537)" in err and f"9 ({classes.wnid_of(9)})" in err and "130" not in err
    assert "using each once" in err
    classes.resolve([1, 9, 130])
    assert capsys.readouterr().err == ""  # no duplicates, no warning


CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_resolve_against_folder_names_by_name_and_index():
    assert classes.resolve("all", CIFAR) == list(range(10))
    assert classes.resolve(["cat", 0, "9", " dog "], CIFAR) == [0, 3, 5, 9]
    assert classes.resolve(("truck",), CIFAR) == [9]


def test_folder_names_that_are_digits_are_names_first():
    names = ["1", "10", "2"]  # sorted folder names: "10" is class 1, "2" class 2
    assert classes.resolve(["10"], names) == [1]
    assert classes.resolve([2], names) == [2]


@pytest.mark.parametrize("bad,shown", [
    (["lion"], "lion"), ([10], "10"), (["n01443537"], "n01443537"), ("animals", "animals"), ([], "empty"),
    ([True], "True"),
])
def test_resolve_against_folder_names_errors_name_the_entry(bad, shown):
    with pytest.raises(TinyGANError, match=shown) as e:
        classes.resolve(bad, CIFAR)
    assert "\n" not in str(e.value)


def test_resolve_against_folder_names_warns_with_the_names(capsys):
    assert classes.resolve(["cat", 3], CIFAR) == [3]
    assert "3 (cat)" in capsys.readouterr().err
