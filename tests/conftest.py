"""Shared test helpers: real third-party tools are required in CI, skipped elsewhere when missing."""
import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a real client (ffmpeg, rtmpdump...); interop tests never skip in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/setup installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_system_librtmp() -> str:
    """Debian's python3 with python3-librtmp, for driving librtmp itself."""
    python = "/usr/bin/python3"
    import subprocess
    ok = os.path.exists(python) and subprocess.run(
        [python, "-c", "import librtmp"], capture_output=True).returncode == 0
    if not ok:
        message = "Debian's python3-librtmp is not installed (scripts/setup installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return python


def scratch_path(test) -> str:
    """A path in a fresh temporary directory, removed when ``test`` ends.

    Instead of trial's ``TestCase.mktemp``: that one is relative to the
    working directory (``_trial_temp`` under trial), which under pytest is
    the repository itself.
    """
    import tempfile
    directory = tempfile.mkdtemp(prefix="fmspy-test-")
    test.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "scratch")
