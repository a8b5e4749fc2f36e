"""The botocore `chime-sdk-voice` service model: the single source of truth for the wire format."""

from __future__ import annotations

from functools import cache

from botocore.loaders import create_loader
from botocore.model import OperationModel, ServiceModel

SERVICE_NAME = "chime-sdk-voice"


@cache
def service_model() -> ServiceModel:
    """Load the newest API version of the model botocore ships."""
    loader = create_loader()
    return ServiceModel(loader.load_service_model(SERVICE_NAME, "service-2"), SERVICE_NAME)


def operation_model(name: str) -> OperationModel:
    return service_model().operation_model(name)


def success_status(operation: OperationModel) -> int:
    return int(operation.http.get("responseCode") or 200)
