"""Journey files: one journey per ``.yaml`` / ``.yml`` or ``.json`` file, read as UTF-8,
parsed as plain data (a key given twice in one mapping is an error, in YAML and in JSON
alike) and validated by `rules.journeys.parse.parse_journey`. A folder loads
all-or-nothing: any bad file, or one journey id defined in two files, refuses it whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import yaml

from flows.core.errors import ConfigError
from rules.journeys.model import Journey
from rules.journeys.parse import parse_journey

SUFFIXES = (".yaml", ".yml", ".json")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML would keep
    the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (the last would silently win)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _read_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "top level"
        hint = ' (quote a value that starts with "{" or "[", e.g. "{{profile.name}}")'
        problem = f"{exc.problem or exc}{hint if 'unhashable' in str(exc.problem) else ''}"
        raise ConfigError(f"{path}: {where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: top level: not valid YAML: {exc}") from None


def _read_json(text: str, path: Path) -> Any:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    try:  # orjson keeps the last of duplicate keys silently: look for them once more
        json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: JSON: key {exc.args[0]!r} appears twice in one object") from None
    return data


def load_journey(path: Path | str) -> Journey:
    """Read and validate one journey file (by suffix: .yaml/.yml or .json)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{path}: not a journey file (use .yaml, .yml or .json)")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: journey file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    data = _read_json(text, path) if suffix == ".json" else _read_yaml(text, path)
    return parse_journey(data, str(path))


def journey_files(folder: Path | str) -> list[Path]:
    """The journey files of a folder, sorted by name (dot-files, other suffixes and
    sub-folders are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: journeys folder not found")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


def load_folder(path: Path | str) -> tuple[Journey, ...]:
    """Every journey of a folder, in file-name order; any bad file or an id defined twice
    refuses the whole folder."""
    journeys: list[Journey] = []
    where: dict[str, str] = {}
    for file in journey_files(path):
        j = load_journey(file)
        if j.id in where:
            raise ConfigError(f"{file}: id: journey id {j.id!r} is already defined in {where[j.id]}")
        where[j.id] = str(file)
        journeys.append(j)
    return tuple(journeys)
