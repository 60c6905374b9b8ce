"""The configuration reference, generated from the daemons' settings models (docs/configuration.md).

Every field of each daemon's settings class becomes a row: its environment variable (the class's prefix,
nested sections joined with `__`), its type, its default and its description, which is the field's
`description` or else the comment on the line that declares it. `python -m launcher.reference` prints it;
a test keeps docs/configuration.md equal to its output.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from edgeoff.ops.settings import field_comments

__all__ = ["render"]


def _type(annotation: Any) -> str:
    """A short, readable form of a field's annotation."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0])
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (Union, UnionType):
        return " or ".join(_type(a) for a in args)
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, BaseModel):
        return ""
    return "" if value is None else f"`{value}`"


def _rows(model: type[BaseModel], env: str) -> Iterator[tuple[str, str, str, str]]:
    comments = field_comments(model)
    for name, info in model.model_fields.items():
        candidates = (info.annotation, *get_args(info.annotation))
        nested = next((a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)), None)
        variable = f"{env}{name.upper()}"
        if nested is not None:
            yield from _rows(nested, f"{variable}__")
            continue
        yield variable, _type(info.annotation), _default(info), info.description or comments.get(name, "")


def render() -> str:
    """The whole reference as markdown."""
    from mobile_agent.daemon import AgentSettings
    from prediction_worker.daemon import WorkerSettings
    from site_daemon.daemon import SiteSettings

    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings models by `python -m launcher.reference`; a test keeps this file in",
        "step. Every setting comes from a command-line flag, an environment variable, or a `KEY=value`",
        "settings file (`--settings-file`, the systemd `EnvironmentFile` format); flags win over the",
        "environment, the environment over the file. Nested sections join with `__`.",
    ]
    for title, model in (
        ("Site daemon (`edgeoff-site`)", SiteSettings),
        ("Prediction worker (`edgeoff-worker`)", WorkerSettings),
        ("Mobile agent (`edgeoff-agent`)", AgentSettings),
    ):
        prefix = str(model.model_config.get("env_prefix", ""))
        lines += ["", f"## {title}", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
        for variable, kind, default, meaning in _rows(model, prefix):
            cells = (f"`{variable}`", kind, default, meaning)
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
