"""Stream a multipart upload straight into object storage.

The request body is parsed as it arrives (python-multipart's push parser) and
the file part is written to an S3 multipart upload a part at a time, so the
video is never held whole in memory nor spooled to disk. While it streams, the
size cap and the container's magic bytes are enforced. On any failure, a
malformed body or one that ends before its closing boundary included, the
multipart upload is aborted (or the finished object deleted) so nothing stays
behind. One part uploads in a thread while the next one is being received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from shared.errors import ErrorCode, ServiceError
from shared.storage import MultipartWriter, Storage

# Form fields other than the file are tiny; anything bigger is not ours.
_MAX_FIELD_BYTES = 1024
_SNIFF_BYTES = 16
# One part header line (python-multipart's default is 4 KiB): room for a long file name,
# even percent-encoded, while a header still cannot grow without bound.
_MAX_HEADER_BYTES = 32 * 1024
# The file name we keep (it is shown back to the client, never used as a path):
# the usual file-system limit, counted in characters.
_MAX_FILENAME_CHARS = 255
_MAX_EXTENSION_CHARS = 16


def clean_filename(name: str | None) -> str:
    """The last path component of a client's file name, at most 255 characters, extension kept."""
    name = PurePath(name or "video").name or "video"
    if len(name) <= _MAX_FILENAME_CHARS:
        return name
    suffix = PurePath(name).suffix
    if len(suffix) > _MAX_EXTENSION_CHARS:
        suffix = ""
    return name[: _MAX_FILENAME_CHARS - len(suffix)] + suffix


def sniff_container(head: bytes) -> tuple[str, str] | None:
    """(extension, content type) of a video container recognised by its first bytes, or None."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        brand = head[8:12]
        if head[4:8] == b"ftyp" and brand == b"qt  ":
            return ".mov", "video/quicktime"
        if head[4:8] == b"ftyp" and brand.startswith(b"3g"):
            return ".3gp", "video/3gpp"
        return ".mp4", "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".mkv", "video/x-matroska"  # also WebM; FFmpeg reads both
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi", "video/x-msvideo"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return ".mpg", "video/mpeg"
    if head.startswith(b"FLV"):
        return ".flv", "video/x-flv"
    if head.startswith(b"OggS"):
        return ".ogv", "video/ogg"
    if head[:1] == b"\x47" and len(head) >= 1:
        return ".ts", "video/mp2t"  # MPEG-TS sync byte; FFmpeg confirms at probe
    return None


@dataclass
class UploadedFile:
    key: str
    filename: str
    content_type: str
    size: int


@dataclass
class UploadResult:
    file: UploadedFile | None = None
    fields: dict[str, str] = field(default_factory=dict)


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.value = bytearray()


class StreamingUpload:
    """One request's upload. `key_for(extension)` names the object once the container is known."""

    def __init__(self, storage: Storage, max_bytes: int, key_for: Callable[[str], str]) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.key_for = key_for
        self.result = UploadResult()
        self._writer: MultipartWriter | None = None
        self._head = bytearray()
        self._inflight: asyncio.Future[None] | None = None
        self._file_done = False
        self._body_done = False  # the closing boundary was seen

    # --- the file part --------------------------------------------------------------
    async def _file_data(self, part: _Part, data: bytes) -> None:
        if self._file_done:
            raise ServiceError(ErrorCode.VALIDATION_ERROR, "Send one file per request.", {"field": "file"})
        size = (self._writer.size if self._writer else 0) + len(self._head) + len(data)
        if size > self.max_bytes:
            raise ServiceError(
                ErrorCode.UPLOAD_TOO_LARGE,
                f"The upload is larger than the limit of {self.max_bytes // (1024 * 1024)} MB.",
                {"max_bytes": self.max_bytes},
            )
        if self._writer is None:
            self._head += data
            if len(self._head) < _SNIFF_BYTES:
                return
            data, self._head = bytes(self._head), bytearray()
            self._writer = self._open_writer(part, data[:_SNIFF_BYTES])
        await self._write(data)

    def _open_writer(self, part: _Part, head: bytes) -> MultipartWriter:
        kind = sniff_container(head)
        if kind is None:
            raise ServiceError(
                ErrorCode.UNSUPPORTED_MEDIA,
                "The file is not a video container we know (MP4, MOV, WebM/MKV, AVI, MPEG, FLV, Ogg).",
                {"filename": clean_filename(part.filename)},
            )
        extension, content_type = kind
        return self.storage.multipart_writer(self.key_for(extension), content_type)

    async def _write(self, data: bytes) -> None:
        assert self._writer is not None
        # Full parts go to a thread, one in flight at a time, while the next one arrives.
        for chunk in self._writer.feed(data):
            await self._drain()
            self._inflight = asyncio.ensure_future(run_in_threadpool(self._writer.send_part, chunk))

    async def _drain(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            await inflight

    async def _finish_file(self, part: _Part) -> None:
        self._file_done = True
        if self._writer is None:
            if not self._head:
                raise ServiceError(
                    ErrorCode.EMPTY_UPLOAD, "The uploaded file is empty.", {"filename": clean_filename(part.filename)}
                )
            # Shorter than the sniffing window: check what there is.
            data, self._head = bytes(self._head), bytearray()
            self._writer = self._open_writer(part, data)
            await self._write(data)
        await self._drain()
        writer = self._writer
        await run_in_threadpool(writer.complete)
        self.result.file = UploadedFile(
            key=writer.key,
            filename=clean_filename(part.filename),
            content_type=writer.content_type,
            size=writer.size,
        )

    async def abort(self) -> None:
        """Undo whatever reached storage: the unfinished multipart upload, or the finished object
        when the body went wrong after the file part (a second file, a bad field, no closing boundary)."""
        if self._inflight is not None:
            with contextlib.suppress(ServiceError):
                await self._drain()
        if self.result.file is not None:
            with contextlib.suppress(ServiceError):
                await run_in_threadpool(self.storage.delete, self.result.file.key)
            self.result.file = None
        elif self._writer is not None:
            await run_in_threadpool(self._writer.abort)

    # --- the request --------------------------------------------------------------------
    async def consume(self, content_type: str, body: AsyncIterator[bytes]) -> UploadResult:
        """Parse the whole body; on any error the stored parts are aborted and the error re-raised."""
        kind, params = parse_options_header(content_type)
        if kind != b"multipart/form-data" or b"boundary" not in params:
            raise ServiceError(
                ErrorCode.VALIDATION_ERROR,
                "Send the video as multipart/form-data with the file in the field 'file'.",
                {"content_type": content_type},
            )
        # (kind, data, extra): the parser's callbacks are synchronous, so they only record
        # what happened; the async handling (storage I/O) runs after each chunk.
        events: list[tuple[str, bytes, bytes]] = []
        header: dict[str, bytes] = {"field": b"", "value": b""}

        def on_header_field(data: bytes, start: int, end: int) -> None:
            header["field"] += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            header["value"] += data[start:end]

        def on_header_end() -> None:
            events.append(("header", header["field"].lower(), header["value"]))
            header["field"], header["value"] = b"", b""

        callbacks = {
            "on_part_begin": lambda: events.append(("begin", b"", b"")),
            "on_part_data": lambda data, start, end: events.append(("data", bytes(data[start:end]), b"")),
            "on_part_end": lambda: events.append(("end", b"", b"")),
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": lambda: events.append(("headers_done", b"", b"")),
            "on_end": lambda: events.append(("body_end", b"", b"")),
        }
        boundary = params[b"boundary"]
        try:
            parser = MultipartParser(boundary, callbacks, max_header_size=_MAX_HEADER_BYTES)  # type: ignore[arg-type]
        except ValueError as exc:  # a boundary over 256 bytes
            raise _malformed(exc) from exc
        part = _Part()
        try:
            try:
                async for chunk in body:
                    parser.write(chunk)
                    for event, data, extra in events:
                        part = await self._handle(event, data, extra, part)
                    events.clear()
                parser.finalize()
                for event, data, extra in events:
                    part = await self._handle(event, data, extra, part)
            except MultipartParseError as exc:
                raise _malformed(exc) from exc
            if not self._body_done:
                # python-multipart's finalize() does not check this: without the closing
                # boundary the file part never ended, so it would be neither stored nor aborted.
                raise ServiceError(
                    ErrorCode.VALIDATION_ERROR,
                    "The request body ended before the multipart closing boundary; the upload is incomplete.",
                )
        except BaseException:
            await self.abort()
            raise
        return self.result

    async def _handle(self, event: str, data: bytes, extra: bytes, part: _Part) -> _Part:
        if event == "begin":
            return _Part()
        if event == "body_end":
            self._body_done = True
        elif event == "header":
            part.headers[data] = extra
        elif event == "headers_done":
            _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
            part.name = options.get(b"name", b"").decode("utf-8", "replace")
            filename = options.get(b"filename")
            part.filename = filename.decode("utf-8", "replace") if filename is not None else None
            if part.name == "file" and self._file_done:
                raise ServiceError(ErrorCode.VALIDATION_ERROR, "Send one file per request.", {"field": "file"})
        elif event == "data":
            if part.name == "file":
                await self._file_data(part, data)
            else:
                part.value += data
                if len(part.value) > _MAX_FIELD_BYTES:
                    raise ServiceError(ErrorCode.VALIDATION_ERROR, f"The form field '{part.name}' is too long.")
        elif event == "end":
            if part.name == "file":
                await self._finish_file(part)
            elif part.name:
                self.result.fields[part.name] = part.value.decode("utf-8", "replace")
        return part


def _malformed(exc: Exception) -> ServiceError:
    return ServiceError(
        ErrorCode.VALIDATION_ERROR, "The multipart/form-data body is malformed.", {"reason": str(exc)[:200]}
    )
