"""SCPConfig: YAML loading with file:line errors, flags, policy conversion."""

from __future__ import annotations

import argparse

import pytest

from dicomconf.scp.config import ConfigError, SCPConfig
from dicomconf.ul import constants as C


def load(text: str, tmp_path) -> SCPConfig:
    path = tmp_path / "scp.yaml"
    path.write_text(text)
    return SCPConfig.from_yaml(path)


def test_defaults_are_a_working_local_server():
    cfg = SCPConfig()
    assert (cfg.host, cfg.port, cfg.ae_titles) == ("127.0.0.1", 11112, ("DICOMCONF",))
    assert cfg.implementation_class_uid == C.IMPLEMENTATION_CLASS_UID
    assert cfg.storage == "memory"


def test_full_file_is_read(tmp_path):
    cfg = load(
        """
host: 127.0.0.1
port: 0
ae_titles: [STORE1, STORE2]
require_called_ae: false
allowed_calling_aes: [MODALITY]
supported:
  Verification: [ImplicitVRLittleEndian]
  CTImageStorage: [ExplicitVRLittleEndian, 1.2.840.10008.1.2]
roles:
  CTImageStorage: {scu: true, scp: true}
max_pdu_length: 32768
max_associations: 5
users: {alice: secret, bob: null}
require_user_identity: true
async_window: [4, 2]
storage: directory
storage_dir: /tmp/x
artim_timeout: 2.5
idle_timeout: null
""",
        tmp_path,
    )
    assert cfg.ae_titles == ("STORE1", "STORE2")
    assert cfg.require_called_ae is False
    assert cfg.allowed_calling_aes == ("MODALITY",)
    assert cfg.supported == {
        "1.2.840.10008.1.1": ("1.2.840.10008.1.2",),
        "1.2.840.10008.5.1.4.1.1.2": ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"),
    }
    assert cfg.roles == {"1.2.840.10008.5.1.4.1.1.2": (True, True)}
    assert cfg.users == {"alice": "secret", "bob": None}
    assert cfg.async_window == (4, 2)
    assert (cfg.max_pdu_length, cfg.max_associations, cfg.artim_timeout, cfg.idle_timeout) == (32768, 5, 2.5, None)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("port: 11112\nportt: 5\n", 2, "unknown setting 'portt'"),
        ("port: 70000\n", 1, "port must be an integer 0-65535"),
        ("ae_titles:\n  - GOOD\n  - THIS_TITLE_IS_TOO_LONG\n", 3, "longer than 16 characters"),
        ("ae_titles: ['   ']\n", 1, "all spaces"),
        ("supported:\n  Verification: [NotASyntax]\n", 2, "'NotASyntax' is neither a UID"),
        ("supported:\n  NoSuchSOP: default\n", 2, "'NoSuchSOP' is neither a UID"),
        ("storage: tape\n", 1, "storage must be one of"),
        ("host: a\nhost: b\n", 2, "duplicate key"),
        ("port: [1, 2\n", 2, "not valid YAML"),
        ("artim_timeout: -1\n", 1, "positive number of seconds"),
        ("async_window: [1]\n", 1, "async_window"),
        ("roles:\n  CTImageStorage: {scu: yes please}\n", 2, "true or false"),
        ("tls:\n  cert: missing.pem\n  key: missing.pem\n", 2, "no such file"),
        ("- just\n- a list\n", 1, "must be a mapping"),
        ("implementation_class_uid: 1.2.abc\n", 1, "is not a UID"),
    ],
)
def test_bad_file_fails_with_file_line_and_what(tmp_path, text, line, words):
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'scp.yaml'}:{line}: "), message
    assert words in message


def test_directory_storage_needs_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="storage_dir"):
        load("storage: directory\n", tmp_path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        SCPConfig.from_yaml(tmp_path / "absent.yaml")


def test_flags_override_the_file(tmp_path):
    cfg = load("port: 104\nae_titles: [FILEAE]\n", tmp_path)
    args = argparse.Namespace(host="::1", port=0, ae=["FLAGAE"], storage=None, storage_dir=None, verbose=True)
    cfg.apply_args(args)
    assert (cfg.host, cfg.port, cfg.ae_titles, cfg.verbose) == ("::1", 0, ("FLAGAE",), True)


def test_policy_carries_the_settings(tmp_path):
    pytest.importorskip("dicomconf.ul.negotiation")
    cfg = load("ae_titles: [X]\nmax_pdu_length: 4096\nusers: {u: p}\nrequire_user_identity: true\n", tmp_path)
    policy = cfg.policy()
    assert tuple(policy.ae_titles) == ("X",)
    assert policy.max_pdu_length == 4096
    assert policy.require_user_identity is True
    assert C.VERIFICATION_SOP_CLASS in policy.supported


def test_storage_dir_is_relative_to_the_file(tmp_path):
    cfg = load("storage: directory\nstorage_dir: incoming\n", tmp_path)
    assert cfg.storage_dir == str(tmp_path / "incoming")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r":2: storage_dir .* is not a directory"):
        load("storage: directory\nstorage_dir: afile\n", tmp_path)


def test_tls_key_that_does_not_load_names_the_line(tmp_path):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"scp.yaml:2: cannot load tls.cert"):
        load("port: 0\ntls:\n  cert: junk.pem\n  key: junk.pem\n", tmp_path)


def test_an_ae_title_outside_the_default_repertoire_is_refused():
    """PS3.5 6.2, VR AE: the default character repertoire (printable ASCII), no backslash."""
    for title in ("CAFÉ", "A\\B", "TAB\tX"):
        with pytest.raises(ConfigError, match="printable ASCII"):
            SCPConfig.from_text(f"ae_titles: [{title!r}]\n", "scp.yaml")
