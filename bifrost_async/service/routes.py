"""The route table: which async paths exist and which synchronous path each replays to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

BodyKind = Literal["json", "multipart"]


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    """One request type.

    ``path`` is the part after the async prefix (``audio/transcriptions``); ``sync_path`` is the
    synchronous route the captured request is replayed to. ``stream_field``/``stream_value`` name
    the field that asks for streaming, which async jobs refuse (``None``: nothing to refuse).
    ``file_fields`` are the multipart fields of which one must be present.
    """

    request_type: str
    path: str
    sync_path: str
    body: BodyKind = "json"
    noun: str = ""
    stream_field: str | None = None
    stream_value: object = True
    file_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.path or self.path.startswith("/") or self.path.endswith("/"):
            raise ValueError(f"route path {self.path!r} must be relative, without outer slashes")
        if not self.sync_path.startswith("/"):
            raise ValueError(f"sync_path {self.sync_path!r} must start with '/'")
        if self.body not in ("json", "multipart"):
            raise ValueError(f"body must be 'json' or 'multipart', not {self.body!r}")


def _spec(request_type: str, path: str, noun: str, **kw: object) -> RouteSpec:
    return RouteSpec(request_type, path, f"/v1/{path}", noun=noun, **kw)  # type: ignore[arg-type]


#: The contract's default table: eleven request types.
DEFAULT_ROUTES: tuple[RouteSpec, ...] = (
    _spec("text_completion", "completions", "text completions", stream_field="stream"),
    _spec("chat_completion", "chat/completions", "chat completions", stream_field="stream"),
    _spec("responses", "responses", "responses", stream_field="stream"),
    _spec("embedding", "embeddings", "embeddings"),
    _spec("speech", "audio/speech", "speech", stream_field="stream_format", stream_value="sse"),
    _spec(
        "transcription",
        "audio/transcriptions",
        "transcriptions",
        body="multipart",
        stream_field="stream",
        file_fields=("file",),
    ),
    _spec("image_generation", "images/generations", "image generations", stream_field="stream"),
    _spec(
        "image_edit",
        "images/edits",
        "image edits",
        body="multipart",
        stream_field="stream",
        file_fields=("image", "image[]"),
    ),
    _spec(
        "image_variation",
        "images/variations",
        "image variations",
        body="multipart",
        file_fields=("image",),
    ),
    _spec("rerank", "rerank", "rerank"),
    _spec("ocr", "ocr", "ocr"),
)


class RouteTable:
    """Matches request paths against the configured request types.

    ``overrides`` maps a request type to its synchronous path (``{"transcription":
    "/api/transcribe"}``); ``extra`` adds or replaces whole :class:`RouteSpec` entries.
    """

    def __init__(
        self,
        prefix: str = "/v1/async",
        *,
        routes: Iterable[RouteSpec] = DEFAULT_ROUTES,
        overrides: Mapping[str, str] | None = None,
        extra: Iterable[RouteSpec] = (),
    ) -> None:
        self.prefix = "/" + prefix.strip("/")
        by_type = {spec.request_type: spec for spec in routes}
        for spec in extra:
            by_type[spec.request_type] = spec
        for request_type, sync_path in (overrides or {}).items():
            if request_type not in by_type:
                known = ", ".join(sorted(by_type))
                raise ValueError(f"unknown request type {request_type!r}; request types: {known}")
            by_type[request_type] = dataclasses.replace(by_type[request_type], sync_path=sync_path)
        self.by_type = by_type
        self.by_path: dict[str, RouteSpec] = {}
        for spec in by_type.values():
            other = self.by_path.get(spec.path)
            if other is not None:
                raise ValueError(
                    f"request types {other.request_type!r} and {spec.request_type!r} "
                    f"share the path {spec.path!r}"
                )
            self.by_path[spec.path] = spec

    def __iter__(self) -> Iterator[RouteSpec]:
        return iter(self.by_type.values())

    def owns(self, path: str) -> bool:
        """True if ``path`` is under the async prefix (the middleware answers it)."""
        return path == self.prefix or path.startswith(self.prefix + "/")

    def match(self, path: str) -> tuple[RouteSpec | None, str | None]:
        """Resolve an async path to ``(spec, job_id)``.

        A submit path gives ``(spec, None)``; a poll path ``(spec, "<id>")``; anything else under
        the prefix ``(None, None)``, including empty segments (``.../transcriptions/``, ``//``).
        """
        rest = path[len(self.prefix) + 1 :]
        spec = self.by_path.get(rest)
        if spec is not None:
            return spec, None
        head, sep, tail = rest.rpartition("/")
        if sep and tail:
            spec = self.by_path.get(head)
            if spec is not None:
                return spec, tail
        return None, None

    def poll_url(self, spec: RouteSpec, job_id: str, root_path: str = "") -> str:
        """The URL path a client polls for ``job_id``."""
        return f"{root_path}{self.prefix}/{spec.path}/{job_id}"
