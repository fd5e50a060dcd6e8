"""The known data set (dicomconf.scenario.qr_data) and the profile claims of the Q/R scenarios."""

from __future__ import annotations

import re
import textwrap

import pytest

from dicomconf.scenario import qr_data
from dicomconf.scenario.expr import render_all
from dicomconf.scenario.loader import SourceError
from dicomconf.scenario.move_listener import needs_listener
from dicomconf.scenario.profile import load_profile, reference_profile, unmet
from dicomconf.scu.client import resolve_uid
from dicomconf.ul import dimse

UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def test_the_set_has_its_shape_and_fixed_uids_under_one_root():
    view = qr_data.template_view()
    assert view["count"] == {"patient": 3, "study": 4, "series": 6, "instance": 12}
    first = [i.dataset for i in qr_data.instances()]
    again = [i.dataset for i in qr_data.instances()]
    assert first == again  # deterministic
    uids = [str(ds[k].value) for ds in first for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")]
    assert all(u.startswith(qr_data.ROOT + ".") and len(u) <= 64 and UID.match(u) for u in uids)
    assert len({str(ds.SOPInstanceUID) for ds in first}) == 12
    assert {str(ds.Modality) for ds in first} == {"CT", "MR"}
    assert {str(ds.StudyDate)[:4] for ds in first} == {"2025", "2026"}
    assert all(str(ds.PatientID).startswith(qr_data.PREFIX) for ds in first)


def test_the_names_cover_an_empty_family_name_and_utf8():
    names = {p["name"]: p for p in qr_data.template_view()["patients"]}
    assert any(n.startswith("^") for n in names)
    utf8 = [p for n, p in names.items() if not n.isascii()]
    assert len(utf8) == 1 and utf8[0]["charset"] == "ISO_IR 192"
    ds = next(i.dataset for i in qr_data.instances() if not str(i.dataset.PatientName).isascii())
    back = dimse.decode_dataset(qr_data.encoded(qr_data.by_uid(str(ds.SOPInstanceUID)), "1.2.840.10008.1.2.1"),
                                "1.2.840.10008.1.2.1")
    assert str(back.PatientName) == utf8[0]["name"]


def test_instances_are_copies_a_caller_may_change():
    instance = qr_data.instances([0])[0]
    instance.dataset.PatientName = "CHANGED"
    assert str(qr_data.by_uid(instance.uid).dataset.PatientName) != "CHANGED"


def test_subsets_by_study_index_or_uid_and_a_clear_error():
    view = qr_data.template_view()
    assert [i.uid for i in qr_data.instances([1])] == view["studies"][1]["instance_uids"]
    assert [i.uid for i in qr_data.instances([view["studies"][2]["uid"]])] == view["studies"][2]["instance_uids"]
    with pytest.raises(ValueError, match="not a study of the known set"):
        qr_data.instances([7])


def test_templates_read_the_set():
    ns = {"set": qr_data.template_view()}
    assert render_all("{set.studies[0].uid}", ns) == qr_data.template_view()["studies"][0]["uid"]
    assert render_all("{set.count.instance}", ns) == 12
    assert render_all("{set.studies[3].instance_uids}", ns) == qr_data.template_view()["studies"][3]["instance_uids"]


def test_short_names_of_the_service_classes():
    assert resolve_uid("study_find") == resolve_uid("study-find") == "1.2.840.10008.5.1.4.1.2.2.1"
    assert resolve_uid("patient_move") == "1.2.840.10008.5.1.4.1.2.1.2"
    assert resolve_uid("patient_get") == "1.2.840.10008.5.1.4.1.2.1.3"
    assert resolve_uid("mpps") == "1.2.840.10008.3.1.2.3.3"


# ---------------------------------------------------------------- profile claims


def test_reference_profile_claims_what_the_embedded_scp_serves():
    profile = reference_profile()
    config = profile.scp_config(port=0)
    assert set(config.services) == {"find", "move", "get", "commitment", "mpps", "worklist"}
    assert config.storage == "memory"
    for name in ("patient-find", "study-find", "study-move", "patient-get", "storage-commitment", "mpps", "worklist"):
        assert resolve_uid(name) in config.supported
    assert unmet(profile, {"query_retrieve.move": True, "commitment": True, "mpps": True,
                           "query_retrieve.models": ["study", "patient"]}) is None


def test_a_profile_without_claims_skips_with_reasons(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("ae_title: PACS\nquery_retrieve: {find: true, models: [study]}\n")
    profile = load_profile(path)
    assert unmet(profile, {"query_retrieve.find": True}) is None
    assert unmet(profile, {"query_retrieve.move": True}) == "target does not claim C-MOVE (profile query_retrieve.move)"
    assert "Storage Commitment" in unmet(profile, {"commitment": True})
    assert unmet(profile, {"query_retrieve.models": ["patient"]}) is not None
    assert profile.scp_config().move_destinations == {}


def test_move_destination_configures_the_scp_and_report_new(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""\
        query_retrieve:
          models: [study]
          move: true
          move_destination: {ae_title: DCONF-MV, host: 127.0.0.1, port: 40404}
        commitment: {report: new}
        """))
    config = load_profile(path).scp_config()
    assert config.move_destinations == {"DCONF-MV": ("127.0.0.1", 40404)}
    assert config.commitment_report_to == "DCONF-MV"


@pytest.mark.parametrize("text, where", [
    ("query_retrieve: {find: yes-please}\n", "query_retrieve.find"),
    ("query_retrieve: {models: [series]}\n", "query_retrieve.models"),
    ("query_retrieve:\n  move_destination: {host: x}\n", "query_retrieve.move_destination"),
    ("commitment: {report: later}\n", "commitment.report"),
    ("mpps: 1\n", "mpps"),
])
def test_bad_claims_are_file_line_errors(tmp_path, text, where):
    path = tmp_path / "p.yaml"
    path.write_text("ae_title: PACS\n" + text)
    with pytest.raises(SourceError) as caught:
        load_profile(path)
    assert f"{path}:" in str(caught.value) and where in str(caught.value)


def test_which_scenarios_need_the_listener():
    from pathlib import Path

    from dicomconf.scenario.model import load_file

    root = Path(__file__).resolve().parents[2] / "scenarios" / "qr"
    need = {e.scenario.id: needs_listener(e.scenario) for f in sorted(root.glob("*.yaml")) for e in load_file(f)}
    assert need["services.move-study-to-harness"] and need["services.commit-stored-instances"]
    assert not need["services.find-study-wildcard"] and not need["services.get-study-with-role-selection"]
