"""Which pyamf build the AMF layer runs on, told without asking the code under test what to expect.

``test_amf.py`` runs every test on each build present; what it cannot say is
whether the compiled one is *the one in use*.  In CI (``CI`` set), .ci/run
builds cpyamf from source, so anything but the compiled codec means the
set-up silently fell back to the six-times-slower pure one: that fails here,
by name, in this process and in a fresh interpreter of the same environment.
(The twistd log line is checked in ``tests/e2e/test_twistd.py``.)  The same holds for
the AMF fast path, ``amf_plain``, which the install compiles with Cython.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

from fmspy_gateway.rtmp import amf, amf_plain

from ..conftest import IN_CI

COMPILED = "cpyamf (compiled)"
PURE = "pyamf (pure Python)"


def cpyamf_is_built() -> bool:
    """Found independently of our layer: the extension modules exist in this environment."""
    try:
        spec = importlib.util.find_spec("cpyamf.amf0")
    except ImportError:
        return False
    return spec is not None and spec.origin is not None and spec.origin.endswith((".so", ".pyd"))


def expected_codec() -> str:
    if IN_CI:
        return COMPILED
    return COMPILED if cpyamf_is_built() else PURE


def test_ci_environment_has_the_compiled_build():
    if not IN_CI:
        pytest.skip("outside CI the compiled build is optional")
    assert cpyamf_is_built(), "CI must build py3amf with Cython (scripts/setup); cpyamf.amf0 is not an extension"


def test_the_codec_in_use_is_named_and_is_the_one_expected():
    assert amf.codec_name() == expected_codec()


def test_the_encoder_and_decoder_in_use_are_built_on_that_codec():
    """Not only the name: the classes doing the work derive from cpyamf's (or pyamf's) own."""
    module = "cpyamf" if expected_codec() == COMPILED else "pyamf"
    codec = amf._CODEC
    for built in (codec._encoder0, codec._encoder3, codec._decoder0, codec._decoder3):
        bases = {cls.__module__.split(".")[0] for cls in built.__mro__ if cls.__module__.split(".")[0] in (
            "cpyamf", "pyamf")}
        assert bases == {module}, (built, bases)
    # And the public functions run through it: a round trip works and loads that module.
    wire = amf.encode_values(["x", 1, {"a": [1, 2]}], amf3=True)
    assert amf.decode_values(wire, amf3=True) == ["x", 1, {"a": [1, 2]}]
    assert f"{module}.amf3" in sys.modules


def test_a_fresh_interpreter_of_this_environment_picks_the_same_codec():
    out = subprocess.run([sys.executable, "-c", "from fmspy_gateway.rtmp import amf; print(amf.codec_name())"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected_codec()


def test_ci_environment_runs_the_compiled_fast_path():
    if not IN_CI:
        pytest.skip("outside CI the compiled fast path is optional")
    assert amf_plain.COMPILED, f"CI must build amf_plain with Cython (setup.py); it runs from {amf_plain.__file__}"
    out = subprocess.run([sys.executable, "-c", "from fmspy_gateway.rtmp import amf_plain; print(amf_plain.__file__)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith((".so", ".pyd")), out.stdout


def test_the_compiled_fast_path_is_not_older_than_its_source():
    # The in-place extension is imported before the .py beside it: after an edit (or a checkout) of the
    # source, the old build would go on running, and be what the tests compare, until the next install.
    if not amf_plain.COMPILED:
        pytest.skip("the fast path runs as Python here")
    folder = os.path.dirname(amf_plain.__file__)
    sources = [os.path.join(folder, name) for name in ("amf_plain.py", "amf_plain.pxd")]
    newest = max(os.path.getmtime(path) for path in sources)
    assert os.path.getmtime(amf_plain.__file__) >= newest, (
        "rtmp/amf_plain.py or .pxd changed after its extension was built: install again (scripts/setup)")
