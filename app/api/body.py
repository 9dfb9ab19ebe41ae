"""Reading a request body with a size limit, before anything is parsed."""

from __future__ import annotations

from fastapi import Request

from app.errors import PayloadTooLargeError


async def read_limited_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
