"""Value checks the strict pydantic validation cannot make.

The SDK types many fields as ``Union[str, Literal[...]]``, so any string passes strict
validation. Here the names the installed ``openai`` package lists (models, transcription
models, voices) are read from its types at import time, and a few documented limits (tool
names, descriptions and schemas; response metadata) are enforced. A package upgrade moves the
lists with it. One problem is reported per event, as the real server answers with one error.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from openai.types.realtime.audio_transcription import AudioTranscription
from openai.types.realtime.realtime_audio_config_output import RealtimeAudioConfigOutput
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from pydantic import BaseModel

__all__ = [
    "REALTIME_MODELS",
    "TRANSCRIPTION_MODELS",
    "VOICES",
    "AllowList",
    "ValueProblem",
    "check_client_values",
    "model_not_found",
    "sdk_literals",
]

Json = dict[str, Any]

TOOL_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_DESCRIPTION: Final = 1024
MAX_METADATA_PAIRS: Final = 16
MAX_METADATA_KEY: Final = 64
MAX_METADATA_VALUE: Final = 512
CUSTOM_VOICE_PREFIX: Final = "voice_"


def sdk_literals(model: type[BaseModel], field: str) -> frozenset[str]:
    """Every string a ``Literal`` inside ``model.field``'s annotation lists."""

    def walk(annotation: object) -> Iterator[str]:
        if typing.get_origin(annotation) is typing.Literal:
            yield from (arg for arg in typing.get_args(annotation) if isinstance(arg, str))
        else:
            for arg in typing.get_args(annotation):
                yield from walk(arg)

    return frozenset(walk(model.model_fields[field].annotation))


REALTIME_MODELS: Final = sdk_literals(RealtimeSessionCreateRequest, "model")
TRANSCRIPTION_MODELS: Final = sdk_literals(AudioTranscription, "model")
VOICES: Final = sdk_literals(RealtimeAudioConfigOutput, "voice")


@dataclass(frozen=True, slots=True)
class AllowList:
    """Names accepted beyond those the installed SDK lists (a newer or private model)."""

    models: frozenset[str] = frozenset()
    any_model: bool = False
    transcription_models: frozenset[str] = frozenset()

    def model(self, name: str) -> bool:
        return self.any_model or name in REALTIME_MODELS or name in self.models

    def transcription_model(self, name: str) -> bool:
        return name in TRANSCRIPTION_MODELS or name in self.transcription_models


@dataclass(frozen=True, slots=True)
class ValueProblem:
    code: str
    message: str
    param: str


def model_not_found(name: str, param: str) -> ValueProblem:
    message = f"The model `{name}` does not exist or you do not have access to it."
    return ValueProblem("model_not_found", message, param)


def _supported(value: str, choices: frozenset[str], param: str) -> ValueProblem:
    listed = ", ".join(f"'{c}'" for c in sorted(choices))
    message = f"Invalid value: '{value}'. Supported values are: {listed}."
    return ValueProblem("invalid_value", message, param)


def _too_long(param: str, limit: int, length: int) -> ValueProblem:
    message = (
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, "
        f"but got a string with length {length} instead."
    )
    return ValueProblem("string_above_max_length", message, param)


def _path(obj: Mapping[str, Any], *keys: str) -> Any:
    value: Any = obj
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _voice(voice: object, param: str) -> ValueProblem | None:
    if voice is None or (isinstance(voice, str) and voice in VOICES):
        return None
    if isinstance(voice, Mapping):
        voice_id = voice.get("id")
        if isinstance(voice_id, str) and voice_id.startswith(CUSTOM_VOICE_PREFIX):
            return None
        message = f"Invalid '{param}.id': a custom voice id starts with '{CUSTOM_VOICE_PREFIX}'."
        return ValueProblem("invalid_value", message, f"{param}.id")
    return _supported(str(voice), VOICES, param)


def _schema_problem(parameters: object) -> str | None:
    if not isinstance(parameters, Mapping):
        return "parameters must be a JSON Schema object"
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        return exc.message
    kind = parameters.get("type")
    if kind != "object":
        return f"schema must be a JSON Schema of type 'object', got type {kind!r}"
    return None


def _tool(tool: Json, param: str) -> ValueProblem | None:
    name = tool.get("name")
    if name is None:
        message = f"Missing required parameter: '{param}.name'."
        return ValueProblem("missing_required_parameter", message, f"{param}.name")
    if not TOOL_NAME.fullmatch(name):
        message = (
            f"Invalid '{param}.name': string does not match pattern. Expected a string that "
            f"matches the pattern '{TOOL_NAME.pattern}'."
        )
        return ValueProblem("invalid_value", message, f"{param}.name")
    description = tool.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION:
        return _too_long(f"{param}.description", MAX_DESCRIPTION, len(description))
    if tool.get("parameters") is not None:
        problem = _schema_problem(tool["parameters"])
        if problem is not None:
            message = f"Invalid schema for function '{name}': {problem}."
            return ValueProblem("invalid_value", message, f"{param}.parameters")
    return None


def _tools(tools: object, param: str) -> ValueProblem | None:
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(tool, dict) and tool.get("type", "function") == "function":
            problem = _tool(tool, f"{param}[{index}]")
            if problem is not None:
                return problem
    return None


def _metadata(metadata: object, param: str) -> ValueProblem | None:
    if not isinstance(metadata, Mapping):
        return None
    if len(metadata) > MAX_METADATA_PAIRS:
        message = (
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{MAX_METADATA_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead."
        )
        return ValueProblem("invalid_value", message, param)
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            message = (
                f"Invalid '{param}': key too long. Expected keys with maximum length "
                f"{MAX_METADATA_KEY}, but got a key with length {len(key)} instead."
            )
            return ValueProblem("string_above_max_length", message, param)
        if isinstance(value, str) and len(value) > MAX_METADATA_VALUE:
            return _too_long(f"{param}.{key}", MAX_METADATA_VALUE, len(value))
    return None


def _session(session: Json, allow: AllowList) -> ValueProblem | None:
    model = session.get("model")
    if isinstance(model, str) and not allow.model(model):
        return model_not_found(model, "session.model")
    problem = _voice(_path(session, "audio", "output", "voice"), "session.audio.output.voice")
    if problem is not None:
        return problem
    transcription = _path(session, "audio", "input", "transcription", "model")
    if isinstance(transcription, str) and not allow.transcription_model(transcription):
        param = "session.audio.input.transcription.model"
        return _supported(transcription, TRANSCRIPTION_MODELS | allow.transcription_models, param)
    return _tools(session.get("tools"), "session.tools")


def _response(response: Json) -> ValueProblem | None:
    problem = _voice(_path(response, "audio", "output", "voice"), "response.audio.output.voice")
    if problem is not None:
        return problem
    return _tools(response.get("tools"), "response.tools") or _metadata(
        response.get("metadata"), "response.metadata"
    )


def check_client_values(event: Json, allow: AllowList) -> ValueProblem | None:
    """The first value the real server would refuse in a (strictly valid) client event."""
    kind = event["type"]
    if kind == "session.update":
        return _session(event["session"], allow)
    if kind == "response.create":
        return _response(event.get("response") or {})
    return None
