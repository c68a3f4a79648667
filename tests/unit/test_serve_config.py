"""The reward server's start-up checks (rewardkit.serving.config): the API key file's permissions."""
from __future__ import annotations

import pytest

from rewardkit.errors import UserError
from rewardkit.serving.config import read_key_file, warn_if_readable

KEY = "test-key-0123456789abcdef"


@pytest.mark.parametrize("mode, readers", [(0o640, "group"), (0o604, "others"), (0o644, "group and others")])
def test_a_key_file_readable_by_group_or_others_gets_one_warning_line(tmp_path, capsys, mode, readers):
    path = tmp_path / "rm.key"
    path.write_text(KEY + "\n")
    path.chmod(mode)
    assert read_key_file(path) == KEY
    warn_if_readable(path)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"warning: --api-key-file {path} is readable by {readers} (mode 0{mode:o})")
    assert f"chmod 600 {path}" in err


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_key_file_gets_no_warning(tmp_path, capsys, mode):
    path = tmp_path / "rm.key"
    path.write_text(KEY)
    path.chmod(mode)
    assert read_key_file(path) == KEY
    warn_if_readable(path)
    assert capsys.readouterr().err == ""


def test_a_missing_key_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="cannot read --api-key-file"):
        read_key_file(tmp_path / "missing.key")
