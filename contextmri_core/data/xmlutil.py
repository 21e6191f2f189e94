"""Namespace-agnostic helpers for reading the ISMRMRD XML header with ElementTree (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import List, Optional, Union

from contextmri_core.errors import HeaderError


def parse_xml(xml: Union[str, bytes]) -> ET.Element:
    """Parse header text/bytes and strip namespaces from every tag; ``HeaderError`` if invalid."""
    if xml is None or (isinstance(xml, (str, bytes)) and not xml.strip()):
        raise HeaderError("the ISMRMRD header is empty")
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    try:
        root = ET.fromstring(xml.strip())
    except ET.ParseError as exc:
        raise HeaderError(f"the ISMRMRD header is not valid XML: {exc}") from exc
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def find_text(node: Optional[ET.Element], path: str) -> Optional[str]:
    """Stripped text at ``path`` (``a/b/c``), or None if absent/empty."""
    if node is None:
        return None
    el = node.find(path)
    if el is None or el.text is None or not el.text.strip():
        return None
    return el.text.strip()


def find_all_text(node: Optional[ET.Element], path: str) -> List[str]:
    """Every non-empty text at ``path``, in document order."""
    if node is None:
        return []
    return [el.text.strip() for el in node.findall(path) if el.text and el.text.strip()]


def find_float(node: Optional[ET.Element], path: str) -> Optional[float]:
    text = find_text(node, path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def find_int(node: Optional[ET.Element], path: str) -> Optional[int]:
    value = find_float(node, path)
    return int(value) if value is not None else None
