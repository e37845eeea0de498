"""The value budget (rtmp.budget) and its use by amf.decode_values: what references may expand to.

The hostile values of issue 8 are built with our own encoder, which writes a
reference for every value it has written before: a tree of shared lists is
the ~160-byte exponential message, a list of one string repeated is the
string-amplified one.  "Refused fast" is shown by counting the measuring
walk's steps (they follow the distinct values, never the expansion), not by
timing it.
"""
import pytest

from fmspy_gateway.rtmp import amf, budget
from fmspy_gateway.rtmp.amf import ASObject, ByteArray, Dictionary, MixedArray
from fmspy_gateway.rtmp.budget import ValueBudget, ValueOverBudget, brief, brief_name, measure

CODEC_NAMES = sorted(amf._CODECS)


@pytest.fixture(params=CODEC_NAMES)
def codec(request):
    return amf._CODECS[request.param]


def exponential_tree(depth):
    """A0 = [], Ai = [Ai-1, Ai-1]: 2**(depth+1) - 1 nodes as a tree, depth + 1 distinct lists."""
    tree = []
    for _ in range(depth):
        tree = [tree, tree]
    return tree


def amplified_string(size=10 * 1024, copies=50_000):
    """One string of ``size`` characters, ``copies`` times in a list (the same object: AMF3 string references)."""
    text = "x" * size
    return [text] * copies


class CountingWalker(budget._Walker):
    steps = 0

    def size(self, value):
        CountingWalker.steps += 1
        return super().size(value)


@pytest.fixture
def counted(monkeypatch):
    CountingWalker.steps = 0
    monkeypatch.setattr(budget, "_Walker", CountingWalker)
    return CountingWalker


# -- the exponential tree ---------------------------------------------------------------------

@pytest.mark.parametrize("amf3", [True, False], ids=["amf3", "amf0"])
def test_exponential_tree_is_small_on_the_wire_and_refused(codec, amf3, counted):
    payload = codec.encode_values(["echo", 2, None, exponential_tree(22)], amf3=amf3)
    assert len(payload) < 250         # 2**23 nodes in a couple of hundred bytes (133 in AMF3)
    with pytest.raises(ValueOverBudget) as info:
        codec.decode_values(payload, amf3=amf3, budget=ValueBudget())
    assert info.value.limit == "maxValueNodes"
    assert "(maxValueNodes)" in str(info.value)
    # The values are kept for the refusal's name and transaction id ...
    assert info.value.values[:2] == ["echo", 2]
    # ... and measuring met each distinct value a few times, not the 8 million nodes.
    assert counted.steps < 200


def test_exponential_tree_deeper_than_anything_could_walk(counted):
    # 2**61 nodes: only a walk that memoizes shared values can ever end.
    with pytest.raises(ValueOverBudget):
        measure([exponential_tree(60)], ValueBudget())
    assert counted.steps < 400


def test_tree_within_the_budget_is_measured_exactly():
    size = measure([exponential_tree(10)], ValueBudget())
    assert size.nodes == 2 ** 11 - 1
    assert size.bytes == 0                      # lists have no bytes of their own


# -- string amplification -----------------------------------------------------------------------

def test_amplified_string_is_small_on_the_wire_and_refused(codec, counted):
    payload = codec.encode_values(["echo", 2, None, amplified_string()], amf3=True)
    assert len(payload) < 120 * 1024            # 110 KB standing for 500 MB of text
    with pytest.raises(ValueOverBudget) as info:
        codec.decode_values(payload, amf3=True, budget=ValueBudget())
    assert info.value.limit == "maxValueBytes"
    assert "(maxValueBytes)" in str(info.value)
    # Stopped as soon as the budget was crossed: a few hundred of the 50,000 strings.
    assert counted.steps < 1000


def test_repeated_keys_count_each_time():
    key = "k" * 1000
    objects = [ASObject({key: 1}) for _ in range(10)]
    assert measure(objects, ValueBudget()).bytes == 10 * (1000 + 8)
    with pytest.raises(ValueOverBudget, match="maxValueBytes"):
        measure(objects, ValueBudget(max_bytes=9000))


def test_bytes_count_their_length():
    assert measure([ByteArray(b"abc"), b"de", bytearray(b"f")], ValueBudget()).bytes == 6


def test_a_message_just_within_the_budget_is_accepted(codec):
    # What an echo reply can carry back is at most what the budget let in.
    limit = ValueBudget(max_nodes=1000, max_bytes=10_000 + 4 + 8 + 8)
    payload = codec.encode_values(["echo", 2, None, amplified_string(1000, 10)], amf3=True)
    values = codec.decode_values(payload, amf3=True, budget=limit)
    assert values[3] == ["x" * 1000] * 10
    with pytest.raises(ValueOverBudget):
        codec.decode_values(payload, amf3=True, budget=ValueBudget(max_nodes=1000, max_bytes=10_000))


# -- cycles ---------------------------------------------------------------------------------------

def test_cycles_are_counted_once(codec):
    cyclic = ASObject(name="me")
    cyclic["self"] = cyclic
    loop = [1]
    loop.append(loop)
    payload = codec.encode_values(["echo", 2, None, cyclic, loop], amf3=True)
    values = codec.decode_values(payload, amf3=True, budget=ValueBudget())
    assert values[3]["self"] is values[3] and values[4][1] is values[4]
    size = measure([values[3], values[4]], ValueBudget())
    # object: itself, 2 keys, "me", and the cycle seen once; list: itself, 1, the cycle.
    assert size.nodes == 5 + 3


def test_dictionary_pairs_and_mixed_arrays_are_walked():
    value = Dictionary([("k" * 100, ["v" * 100]), (1, 2)])
    assert measure([value], ValueBudget()).bytes == 100 + 100 + 8 + 8
    assert measure([MixedArray({"a": "b" * 10, 0: 1})], ValueBudget()).nodes == 5


def test_nesting_too_deep_to_measure_is_refused_not_a_crash():
    deep = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueOverBudget, match="nested too deeply"):
        measure([deep], ValueBudget(max_nodes=10 ** 9))


# -- the fast path ------------------------------------------------------------------------------

def test_no_walk_when_no_reference_was_followed(codec, monkeypatch):
    def never(values, budget):
        raise AssertionError("measured a message that cannot have expanded")
    monkeypatch.setattr(amf, "measure", never)
    payload = codec.encode_values(["echo", 2, None, {"a": [1, "two", 3.5]}, "x" * 1000], amf3=True)
    assert codec.decode_values(payload, amf3=True, budget=ValueBudget())[4] == "x" * 1000


def test_a_followed_reference_is_measured(codec, monkeypatch):
    measured = []
    monkeypatch.setattr(amf, "measure", lambda values, limit: measured.append(values))
    payload = codec.encode_values(["echo", 2, None, ["same", "same"]], amf3=True)
    codec.decode_values(payload, amf3=True, budget=ValueBudget())
    assert measured


def test_a_body_bigger_than_the_budget_is_measured_without_references(codec):
    # 8 counted bytes per scalar: 300 numbers in ~2.7 KB can cross a 2,000-byte budget without any reference.
    payload = codec.encode_values(["echo", 2, None, list(range(300))], amf3=False)
    with pytest.raises(ValueOverBudget, match="maxValueBytes"):
        codec.decode_values(payload, amf3=False, budget=ValueBudget(max_bytes=2000))


def test_without_a_budget_nothing_is_measured(codec):
    payload = codec.encode_values(["echo", 2, None, amplified_string(1000, 10_000)], amf3=True)
    assert len(codec.decode_values(payload, amf3=True)[3]) == 10_000


def test_budgets_must_be_positive():
    with pytest.raises(ValueError):
        ValueBudget(max_nodes=0)
    with pytest.raises(ValueError):
        ValueBudget(max_bytes=0)


# -- brief / brief_name -------------------------------------------------------------------------

def test_brief_cuts_long_strings_and_says_how_long():
    text = brief("a" * 10_000)
    assert len(text) < 100 and "10000 characters" in text
    assert brief("short") == "'short'"


def test_brief_never_walks_a_container(counted):
    tree = exponential_tree(60)
    assert brief(tree) == "<list of 2>"
    assert brief(ASObject(a=tree)) == "<ASObject of 1>"
    assert brief(ByteArray(b"abc")) == "<ByteArray of 3>"
    assert brief(b"abc") == "<3 bytes>"
    assert brief(object()) == "<object>"


def test_brief_numbers_and_huge_ints():
    assert brief(2) == "2" and brief(None) == "None" and brief(1.5) == "1.5"
    text = brief(10 ** 5000)      # repr() of it would raise ValueError (Python's 4300-digit limit)
    assert len(text) < 100 and "bits" in text
    assert len(brief(10 ** 100)) < 100


def test_brief_name_is_the_name_itself_or_cut():
    assert brief_name("cam1") == "cam1"
    long = brief_name("n" * 5000)
    assert long.startswith("n" * 60) and "5000 characters" in long and len(long) < 100
    assert brief_name(None) == "None"
    assert brief_name(exponential_tree(60)) == "<list of 2>"
