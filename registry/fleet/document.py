"""Reading a fleet file: YAML (safe), checked against fleet.schema.json, ``${VAR}`` resolved.

Every problem is reported with the file's line, taken from the YAML nodes, before anything is
compared with the registry or written.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from django.core.exceptions import ValidationError

from registry.presets import preset_fields

SCHEMA = json.loads((Path(__file__).parent / "fleet.schema.json").read_text())
# ${NAME} is replaced by the variable's value; $${ is a literal "${".
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class FleetFileError(Exception):
    """A file that cannot be applied; ``problems`` are "line N: what" strings."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"{source}:{problem}" for problem in problems))


@dataclass(frozen=True)
class WorkerSpec:
    model_name: str
    fields: dict[str, Any]  # worker fields, secrets resolved, presets expanded
    line: int


@dataclass(frozen=True)
class PolicySpec:
    model_name: str
    fields: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Fleet:
    workers: list[WorkerSpec]
    policies: list[PolicySpec]
    # The file's prices, teams and budgets, checked against the schema; applied by usage.config_file.
    usage: dict | None = None
    usage_lines: "_Lines | None" = None


def fleet_read(text: str, *, source: str = "fleet.yaml", environ: dict[str, str] | None = None) -> Fleet:
    environ = os.environ if environ is None else environ
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}" if mark else "1"
        raise FleetFileError(source, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    lines = _Lines(root)
    problems = lines.duplicate_keys()
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for error in sorted(validator.iter_errors(document), key=lambda error: list(map(str, error.absolute_path))):
        path = list(error.absolute_path)
        where = ".".join(map(str, path)) or "(top level)"
        problems.append(f"{lines.at(path)}: {where}: {error.message}")
    if problems:
        raise FleetFileError(source, problems)
    return _specs(document, lines, source, environ)


def _specs(document: dict, lines: "_Lines", source: str, environ) -> Fleet:
    problems: list[str] = []
    workers, policies = [], []
    for model_name, model in (document["models"] or {}).items():
        model = model or {}
        if "policy" in model:
            policies.append(
                PolicySpec(model_name, dict(model["policy"] or {}), lines.at(["models", model_name, "policy"]))
            )
        for index, worker in enumerate(model.get("workers") or []):
            path = ["models", model_name, "workers", index]
            try:
                fields = _resolved(worker, path, lines, environ)
            except FleetFileError as exc:
                problems += exc.problems
                continue
            preset = fields.pop("preset", None)
            base_url, api_key = fields.pop("base_url", None), fields.pop("api_key", None)
            if preset:
                try:
                    fields = preset_fields(preset, base_url=base_url, api_key=api_key, given=fields)
                except ValidationError as exc:
                    problems += [
                        f"{lines.at([*path, name])}: {name}: {' '.join(messages)}"
                        for name, messages in exc.message_dict.items()
                    ]
                    continue
            workers.append(WorkerSpec(model_name, fields, lines.at(path)))
    if problems:
        raise FleetFileError(source, problems)
    return Fleet(workers, policies, usage=document.get("usage"), usage_lines=lines)


def _resolved(value: Any, path: list, lines: "_Lines", environ) -> Any:
    """``value`` with every ``${VAR}`` in its strings replaced from the environment."""
    if isinstance(value, dict):
        return {key: _resolved(item, [*path, key], lines, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, [*path, index], lines, environ) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value
    missing = [match[1] for match in _REFERENCE.finditer(value) if match[1] and match[1] not in environ]
    if missing:
        raise FleetFileError(
            "", [f"{lines.at(path)}: {'.'.join(map(str, path))}: environment variable {', '.join(missing)} is not set"]
        )
    return _REFERENCE.sub(lambda match: environ[match[1]] if match[1] else "${", value)


class _Lines:
    """Line numbers (1-based) of the values of a composed YAML document, by path."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def at(self, path: list) -> int:
        node, line = self.root, 1
        for step in path:
            if node is None:
                break
            line = node.start_mark.line + 1
            node = self._child(node, step)
        return node.start_mark.line + 1 if node is not None else line

    @staticmethod
    def _child(node: yaml.Node, step) -> yaml.Node | None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(step):
                    return value
        if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            return node.value[step]
        return None

    def duplicate_keys(self) -> list[str]:
        """PyYAML keeps the last of two equal keys; a fleet file with two is a mistake."""
        problems, todo = [], [self.root] if self.root is not None else []
        while todo:
            node = todo.pop()
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key, value in node.value:
                    if key.value in seen:
                        problems.append(f"{key.start_mark.line + 1}: {key.value!r} appears twice")
                    seen.add(key.value)
                    todo.append(value)
            elif isinstance(node, yaml.SequenceNode):
                todo.extend(node.value)
        return sorted(problems, key=lambda problem: int(problem.split(":")[0]))
