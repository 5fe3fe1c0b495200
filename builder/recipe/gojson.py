"""A stage as JSON in the schema of Apptainer's parsed definition (spec §A.11).

Field order, ``null`` versus ``[]``/``{}`` and base64 ``raw``/``fullraw`` follow Go's
``encoding/json`` on ``types.Definition``; written with ``base.gojson.marshal`` (Go's
escaping of ``<``, ``>``, ``&``, U+2028 and U+2029), a tool reading Apptainer's output reads
ours the same way.
"""

from __future__ import annotations

import base64
from typing import Any

from builder.recipe import gostr
from builder.recipe.model import Script, Stage

__all__ = ["to_apptainer_json"]


def _script(script: Script) -> dict[str, str]:
    return {"args": gostr.json_text(script.args), "script": gostr.json_text(script.script)}


def _text_map(values: dict[str, str] | None) -> dict[str, str] | None:
    if values is None:
        return None
    return {gostr.json_text(k): gostr.json_text(v) for k, v in sorted(values.items())}


def to_apptainer_json(stage: Stage, full_raw: bytes, raw: bytes | None = None) -> dict[str, Any]:
    """One stage as Go's ``json.Marshal(types.Definition)`` would give it."""
    scripts = stage.scripts
    files = [
        {
            "args": gostr.json_text(block.args),
            "files": [
                {"source": gostr.json_text(f.source), "destination": gostr.json_text(f.destination)}
                for f in block.files
            ],
        }
        for block in stage.files
    ]
    raw_bytes = gostr.to_bytes(stage.raw) if raw is None else raw
    return {
        "header": _text_map(stage.header),
        "imageData": {
            "metadata": None,
            "labels": _text_map(stage.labels),
            "imageScripts": {
                "help": _script(scripts["help"]),
                "environment": _script(scripts["environment"]),
                "runScript": _script(scripts["runscript"]),
                "test": _script(scripts["test"]),
                "startScript": _script(scripts["startscript"]),
            },
        },
        "buildData": {
            "files": files,
            "buildScripts": {
                "pre": _script(scripts["pre"]),
                "setup": _script(scripts["setup"]),
                "post": _script(scripts["post"]),
                "test": _script(scripts["test"]),
                "arguments": _script(scripts["arguments"]),
            },
        },
        "customData": _text_map(stage.custom_data),
        "raw": base64.b64encode(raw_bytes).decode("ascii"),
        "fullraw": base64.b64encode(full_raw).decode("ascii"),
        "appOrder": [gostr.json_text(a) for a in stage.app_order],
    }

