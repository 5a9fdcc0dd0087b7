"""Request body parsers that refuse hostile bodies with a 400 or 413 instead of failing with a 500."""

import io
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

# No request of this API nests deeper than a list of objects holding a list or an object.
MAX_JSON_DEPTH = 32


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"


def read_bounded(stream) -> bytes:
    """Return the request body, refusing one larger than settings.DATA_UPLOAD_MAX_MEMORY_SIZE.

    Django checks the size of the form bodies it parses itself; DRF's JSON and form parsers
    read the stream whole. Reading one byte more than the limit refuses a larger body however
    long it says it is.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise body_too_large()
    return body


def body_too_large() -> BodyTooLarge:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return BodyTooLarge(
        f"The request body is larger than {limit:,} bytes (RELAYADMIN_MAX_BODY_BYTES); send fewer rows at a time."
    )


class BoundedJSONParser(JSONParser):
    """Parse JSON as DRF does, within the body limit and MAX_JSON_DEPTH.

    Python's decoder recurses once per level: a few thousand "[" raise RecursionError (a 500),
    and data nested hundreds deep can still exhaust the stack in later code that walks it.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        body = read_bounded(stream)
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise ParseError(too_deep_message()) from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(too_deep_message())
        return data


class BoundedFormParser(FormParser):
    """Parse a form-encoded body (the browsable API's forms) within the body limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        return super().parse(io.BytesIO(read_bounded(stream)), media_type, parser_context)


class BoundedMultiPartParser(MultiPartParser):
    """Parse multipart bodies as Django does (it enforces the limit); answer too large with a 413."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RequestDataTooBig:
            raise body_too_large() from None


def too_deep_message() -> str:
    return f"JSON parse error - the document is nested more than {MAX_JSON_DEPTH} levels deep."


def json_depth(data) -> int:
    """Return how deeply lists and objects nest in data (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children: Iterable[object]
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break  # already too deep: no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest
