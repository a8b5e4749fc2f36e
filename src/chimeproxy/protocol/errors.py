"""Service errors and their wire form: status, `x-amzn-ErrorType`, a `{"Code", "Message"}` body."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """An error answered to the client; subclasses name the error shape of the model."""

    type_name: ClassVar[str] = "ServiceFailureException"
    code: ClassVar[str] = "ServiceFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or []  # extra answer headers, e.g. Retry-After

    def body(self) -> dict[str, str]:
        return {"Code": self.code, "Message": self.message}


def _error(type_name: str, code: str, status: int) -> type[ServiceError]:
    return type(
        type_name, (ServiceError,), {"type_name": type_name, "code": code, "status": status}
    )


# Modelled errors of chime-sdk-voice; Code is the model's ErrorCode enum value.
BadRequestException = _error("BadRequestException", "BadRequest", 400)
ResourceLimitExceededException = _error(
    "ResourceLimitExceededException", "ResourceLimitExceeded", 400
)
UnauthorizedClientException = _error("UnauthorizedClientException", "Unauthorized", 401)
ForbiddenException = _error("ForbiddenException", "Forbidden", 403)
AccessDeniedException = _error("AccessDeniedException", "AccessDenied", 403)
NotFoundException = _error("NotFoundException", "NotFound", 404)
ConflictException = _error("ConflictException", "Conflict", 409)
GoneException = _error("GoneException", "Gone", 410)
UnprocessableEntityException = _error("UnprocessableEntityException", "Unprocessable", 422)
ThrottledClientException = _error("ThrottledClientException", "Throttled", 429)
ServiceFailureException = _error("ServiceFailureException", "ServiceFailure", 500)
ServiceUnavailableException = _error("ServiceUnavailableException", "ServiceUnavailable", 503)

# Errors AWS's front door answers before any operation runs (not in the model).
UnknownOperationException = _error("UnknownOperationException", "UnknownOperation", 404)
NotImplementedOperation = _error("NotImplementedException", "NotImplemented", 501)
# Authentication errors: their Code is the error type itself, as AWS's front door answers, so
# that SDKs reading the body's Code (the AWS SDK for JavaScript v2) and those reading
# x-amzn-ErrorType (botocore, the JavaScript v3 SDK) report the same error.
MissingAuthenticationTokenException = _error(
    "MissingAuthenticationTokenException", "MissingAuthenticationTokenException", 403
)
UnrecognizedClientException = _error(
    "UnrecognizedClientException", "UnrecognizedClientException", 403
)
InvalidSignatureException = _error("InvalidSignatureException", "InvalidSignatureException", 403)
IncompleteSignatureException = _error(
    "IncompleteSignatureException", "IncompleteSignatureException", 400
)
RequestEntityTooLargeException = _error(
    "RequestEntityTooLargeException", "RequestEntityTooLarge", 413
)
UnsupportedMediaTypeException = _error("UnsupportedMediaTypeException", "UnsupportedMediaType", 415)
HeadersTooLargeException = _error("RequestHeaderFieldsTooLargeException", "HeadersTooLarge", 431)
