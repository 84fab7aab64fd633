"""Load rule and pattern files: YAML validated with pydantic, errors naming the line.

The line-numbered YAML composition is the registry's (``contract.registry``): reused, not
copied. ``load_rules()`` reads the bundled ``defaults.yaml`` and then each overlay file in
order: an overlay's ``settings`` override the defaults', a rule with a known id replaces
that rule, a new id adds one, and ``overrides`` are appended (they apply in file order to
the sensors their selector matches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from contract.registry import Registry
from contract.yamlines import YamlLinesError, YamlPath, clean_loc, compose_with_lines, line_for
from ops_center.domain.correlation import PatternSet, check_templates
from ops_center.domain.errors import RuleError
from ops_center.domain.rules import RULE_ADAPTER, RULE_KINDS, Override, RuleSet, merge_patch
from ops_center.domain.rules.base import EngineSettings, RuleBase, Selector, Strict

_Path = YamlPath


class _OverrideSpec(Strict):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    rule: str
    select: Selector = Field(default_factory=Selector)
    patch: dict[str, Any] = Field(default_factory=dict, alias="set")
    enabled: bool | None = None


class _RuleFile(Strict):
    version: Literal[1]
    settings: dict[str, Any] = Field(default_factory=dict)
    rules: list[dict[str, Any]] = Field(default_factory=list)
    overrides: list[_OverrideSpec] = Field(default_factory=list)


def _compose(text: str, source: str) -> tuple[Any, dict[_Path, int]]:
    try:
        return compose_with_lines(text)
    except YamlLinesError as exc:
        raise RuleError(exc.message, source=source, line=exc.line) from exc


def _fail(exc: ValidationError, prefix: _Path, lines: Mapping[_Path, int], source: str) -> RuleError:
    err = exc.errors()[0]
    raw = tuple(err["loc"])
    if err["type"].startswith("union_tag"):
        raw = (*raw, "kind")  # no or unknown ``kind``: point at it
    elif raw and raw[0] in RULE_KINDS:
        raw = raw[1:]  # the discriminated union puts the kind in front of the location
    loc = (*prefix, *clean_loc(raw))
    dotted = ".".join(str(p) for p in loc)
    return RuleError(f"{dotted}: {err['msg']}", source=source, line=line_for(loc, lines))


class _Acc:
    """Rules, overrides and settings accumulated over the files."""

    def __init__(self) -> None:
        self.rules: dict[str, RuleBase] = {}
        self.overrides: list[Override] = []
        self.settings: dict[str, Any] = {}


def _add_file(acc: _Acc, text: str, source: str) -> None:
    data, lines = _compose(text, source)
    try:
        spec = _RuleFile.model_validate(data)
    except ValidationError as exc:
        raise _fail(exc, (), lines, source) from exc
    acc.settings.update(spec.settings)
    try:
        EngineSettings.model_validate(acc.settings)
    except ValidationError as exc:
        raise _fail(exc, ("settings",), lines, source) from exc
    seen: dict[str, int] = {}
    for i, raw in enumerate(spec.rules):
        try:
            rule: RuleBase = RULE_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            raise _fail(exc, ("rules", i), lines, source) from exc
        if rule.id in seen:
            raise RuleError(f"duplicate rule id {rule.id!r} (first on line {seen[rule.id]})",
                            source=source, line=lines.get(("rules", i, "id")))
        seen[rule.id] = lines.get(("rules", i, "id"), 0)
        acc.rules[rule.id] = rule
    for i, ov in enumerate(spec.overrides):
        line = lines.get(("overrides", i))
        base = acc.rules.get(ov.rule)
        if base is None:
            raise RuleError(f"override of unknown rule {ov.rule!r}", source=source,
                            line=lines.get(("overrides", i, "rule"), line))
        patch = dict(ov.patch)
        if ov.enabled is not None:
            patch["enabled"] = ov.enabled
        if "id" in patch or "kind" in patch:
            raise RuleError("an override may not change a rule's id or kind", source=source, line=line)
        try:  # each override must make a valid rule on its own
            RULE_ADAPTER.validate_python(merge_patch(base.model_dump(by_alias=True), patch))
        except ValidationError as exc:
            raise _fail(exc, ("overrides", i, "set"), lines, source) from exc
        acc.overrides.append(Override(ov.rule, ov.select, patch, origin=f"{source}:{line}"))


def _bundled(name: str) -> str:
    return resources.files("ops_center.rulebook").joinpath(name).read_text("utf-8")


def parse_rules(texts: Sequence[tuple[str, str]]) -> RuleSet:
    """Rule files as (text, source name), defaults first."""
    acc = _Acc()
    for text, source in texts:
        _add_file(acc, text, source)
    return RuleSet(tuple(acc.rules.values()), tuple(acc.overrides),
                   EngineSettings.model_validate(acc.settings))


def load_rules(overlays: Sequence[str | Path] = (), *, defaults: bool = True,
               registry: Registry | None = None) -> RuleSet:
    """The bundled defaults (unless ``defaults=False``) plus overlay files in order. With a
    registry, every sensor's rules are resolved once now, so a bad override combination fails
    at load time rather than on the first reading."""
    texts: list[tuple[str, str]] = [(_bundled("defaults.yaml"), "defaults.yaml")] if defaults else []
    for path in overlays:
        p = Path(path)
        try:
            texts.append((p.read_text("utf-8"), str(p)))
        except OSError as exc:
            raise RuleError(f"cannot read rules: {exc}", source=str(p)) from exc
    rules = parse_rules(texts)
    if registry is not None:
        for ref in registry.sensors.values():
            rules.resolve(ref)
    return rules


def parse_patterns(text: str, *, source: str = "<patterns>") -> PatternSet:
    data, lines = _compose(text, source)
    try:
        patterns = PatternSet.model_validate(data)
    except ValidationError as exc:
        raise _fail(exc, (), lines, source) from exc
    problems = check_templates(patterns)
    if problems:
        i, msg = problems[0]
        raise RuleError(msg, source=source, line=lines.get(("patterns", i, "title")))
    kinds = [p.kind for p in patterns.patterns]
    for i, p in enumerate(patterns.patterns):
        for k in p.upgrades:
            if k not in kinds:
                raise RuleError(f"upgrades unknown kind {k!r}", source=source,
                                line=lines.get(("patterns", i, "upgrades")))
    return patterns


def load_patterns(path: str | Path | None = None) -> PatternSet:
    """A pattern file, or the bundled ``patterns.yaml`` when ``path`` is None."""
    if path is None:
        return parse_patterns(_bundled("patterns.yaml"), source="patterns.yaml")
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise RuleError(f"cannot read patterns: {exc}", source=str(p)) from exc
    return parse_patterns(text, source=str(p))
