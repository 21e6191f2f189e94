"""Every pipeline XML parses, and every Python module/function it names imports."""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from contextmri_core.service.session import properties_from_config
from contextmri_core.recon.stream import StreamSettings

PIPELINES = sorted((Path(__file__).resolve().parents[2] / "pipelines").glob("*.xml"))


def test_the_four_variants_exist():
    names = {p.stem for p in PIPELINES}
    assert {"contextmri_acquisitions", "contextmri_buffers", "contextmri_buffers_dicom",
            "contextmri_connect"} <= names


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_pipeline_parses_and_names_importable_targets(path):
    root = ET.parse(path).getroot()
    assert root.tag == "configuration" and root.find("stream") is not None
    externals = root.findall("stream/external")
    assert externals, "every contextmri pipeline has an external (python or connect) step"
    for ext in externals:
        execute, connect = ext.find("execute"), ext.find("connect")
        assert (execute is None) != (connect is None)
        if execute is not None:
            assert execute.get("type") == "python"
            module = importlib.import_module(execute.get("name"))
            assert callable(getattr(module, execute.get("target")))
        else:
            assert 0 < int(connect.get("port")) < 65536
        config = ext.find("configuration")
        StreamSettings.from_properties(properties_from_config(ET.tostring(config)))
    for gadget in root.iter("gadget"):
        assert gadget.findtext("dll") and gadget.findtext("classname")


def test_the_connect_pipeline_sets_only_what_a_client_may_choose():
    """The warm server refuses a stream that sets server-side settings (issue 13): the
    shipped <connect> pipeline must pass the server's client policy with its defaults."""
    from contextmri_core.service.client_policy import SERVER_ONLY, ClientPolicy

    path = next(p for p in PIPELINES if p.stem == "contextmri_connect")
    config = ET.parse(path).getroot().find("stream/external/configuration")
    props = properties_from_config(ET.tostring(config))
    assert not set(props) & set(SERVER_ONLY)
    ClientPolicy().settings(props, StreamSettings())
