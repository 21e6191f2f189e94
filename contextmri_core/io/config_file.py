"""YAML config files (``--config``) -> plain dicts, errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import yaml

from contextmri_core.errors import InputFileError


def read_yaml_mapping(path: Union[str, Path]) -> Dict[str, Any]:
    """The top-level mapping of a YAML file ({} for an empty file); ``InputFileError`` when
    the file is missing, not YAML, or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such config file")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputFileError(p, f"not valid YAML ({exc})") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputFileError(p, f"must hold a mapping of settings, not a {type(doc).__name__}")
    return {str(k): v for k, v in doc.items()}
