"""AWS error types as the KVS service model defines them.

The core raises these without knowing HTTP; the server renders them with the
status, ``x-amzn-ErrorType`` and ``{"Message": ...}`` body that botocore expects.
"""

from __future__ import annotations


class AwsError(Exception):
    """An error AWS would return before a response body starts."""

    code = "InternalFailure"
    status = 500
    message_key = "Message"  # the body member; AWS's auth layer writes "message" (spec §3)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthFailure(AwsError):
    """Refused by the signature check, before any operation runs: 403, lowercase ``message``."""

    status = 403
    message_key = "message"


def _error(code: str, status: int, base: type[AwsError] = AwsError) -> type[AwsError]:
    return type(code, (base,), {"code": code, "status": status, "__doc__": f"AWS {code}."})


ResourceNotFoundException = _error("ResourceNotFoundException", 404)
ResourceInUseException = _error("ResourceInUseException", 400)
InvalidArgumentException = _error("InvalidArgumentException", 400)
VersionMismatchException = _error("VersionMismatchException", 400)
ClientLimitExceededException = _error("ClientLimitExceededException", 400)
ConnectionLimitExceededException = _error("ConnectionLimitExceededException", 400)
TagsPerResourceExceededLimitException = _error("TagsPerResourceExceededLimitException", 400)
InvalidResourceFormatException = _error("InvalidResourceFormatException", 400)
AccountStreamLimitExceededException = _error("AccountStreamLimitExceededException", 400)
NotAuthorizedException = _error("NotAuthorizedException", 401)
InvalidEndpointException = _error("InvalidEndpointException", 400)
NoDataRetentionException = _error("NoDataRetentionException", 400)
SerializationException = _error("SerializationException", 400)
UnknownOperationException = _error("UnknownOperationException", 404)
InternalFailure = _error("InternalFailure", 500)
ServiceUnavailable = _error("ServiceUnavailable", 503)
AccessDeniedException = _error("AccessDeniedException", 401)
# archived media (spec archived-media §2.1)
MissingCodecPrivateDataException = _error("MissingCodecPrivateDataException", 400)
InvalidCodecPrivateDataException = _error("InvalidCodecPrivateDataException", 400)
UnsupportedStreamMediaTypeException = _error("UnsupportedStreamMediaTypeException", 400)
InvalidMediaFrameException = _error("InvalidMediaFrameException", 400)
SessionExpired = _error("NotAuthorizedException", 403)
"""A streaming session's token expired or was revoked: 403, as AWS answers a player."""
# the SigV4 layer (spec §1, §3)
InvalidSignatureException = _error("InvalidSignatureException", 403, AuthFailure)
IncompleteSignatureException = _error("IncompleteSignatureException", 403, AuthFailure)
UnrecognizedClientException = _error("UnrecognizedClientException", 403, AuthFailure)
MissingAuthenticationTokenException = _error(
    "MissingAuthenticationTokenException", 403, AuthFailure
)
