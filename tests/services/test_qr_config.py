"""The index settings: `index:` and `load:` in the SCP configuration, --index and --load on the command line."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from dicomconf.scp.config import ConfigError, SCPConfig


def test_file_settings_resolve_relative_to_the_file(tmp_path):
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "scp.yaml"
    cfg.write_text("storage: memory\nindex: idx/q.sqlite\nload: [in]\n")
    config = SCPConfig.from_yaml(cfg)
    assert config.index == str(tmp_path / "idx" / "q.sqlite")
    assert config.load == (str(tmp_path / "in"),)


@pytest.mark.parametrize("text, line, what", [
    ("port: 1\nindex: 5\n", 2, "index must be"),
    ("load:\n  - nowhere\n", 2, "is not a directory"),
    ("storage: discard\nindex: x.sqlite\n", 0, "discard storage keeps nothing"),
    ("index: none\nload: .\n", 0, "load needs an index"),
])
def test_bad_settings_fail_with_file_and_line(tmp_path, text, line, what):
    cfg = tmp_path / "scp.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=what) as info:
        SCPConfig.from_yaml(cfg)
    assert str(info.value).startswith(f"{cfg}:{line}:")


def test_flags_override(tmp_path):
    args = argparse.Namespace(index=str(tmp_path / "i.sqlite"), load=[str(tmp_path)], storage="memory")
    config = SCPConfig().apply_args(args)
    assert config.index == str(tmp_path / "i.sqlite") and config.load == (str(tmp_path),)
    assert SCPConfig().apply_args(argparse.Namespace(index="default")).index == "default"


def test_cli_load_past_the_memory_limit_is_one_line(tmp_path):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import qr_kit

    qr_kit.write_part10(qr_kit.instance(1), tmp_path / "a.dcm")
    result = subprocess.run([sys.executable, "-m", "dicomconf.cli", "scp", "--port", "0", "--index", "default",
                             "--load", str(tmp_path), "--memory-limit", "1KiB"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "memory storage limit" in result.stderr, result.stderr
