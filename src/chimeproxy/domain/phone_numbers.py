"""Phone-number inventory facts: the statuses a number goes through and how long a deleted
number waits before it goes back to the carrier."""

from __future__ import annotations

from enum import StrEnum


class PhoneNumberStatus(StrEnum):
    """A phone number's Status, as the API spells it (the model's PhoneNumberStatus values that
    chimeproxy's inventory uses)."""

    UNASSIGNED = "Unassigned"
    ASSIGNED = "Assigned"
    DELETE_IN_PROGRESS = "DeleteInProgress"


# How long a deleted phone number waits in the deletion queue (restorable) before it goes back
# to the carrier, as in the hosted service.
DELETION_QUEUE_MS = 7 * 86_400_000
