"""POST /alerts/{severity}: the receiver of Alertmanager's webhook notifications.

monitoring/alertmanager/alertmanager.yml routes every alert to `/alerts/<severity>`. Each alert
of a notification is logged once as a structured line (logfmt message, the same fields in the
record's `alert` attribute) and counted in /metrics. Nothing is remembered between requests, so
any number of API workers or replicas behave the same; Alertmanager itself deduplicates,
groups, retries and re-sends.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Literal, get_args

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from otel import privacy

from .auth import require_api_key

log = logging.getLogger(__name__)

Severity = Literal["default", "critical", "warning", "info"]
Status = Literal["firing", "resolved"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
STATUSES: tuple[str, ...] = get_args(Status)
REJECT_REASONS = ("unknown_severity", "invalid_payload")

_BARE = re.compile(r"[A-Za-z0-9_.:/#@+-]+")
_MAX_REPORTED_ERRORS = 5


class WebhookAlert(BaseModel):
    """One alert of a notification (Alertmanager webhook payload, version 4)."""

    model_config = ConfigDict(populate_by_name=True)

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: datetime = Field(alias="startsAt")
    # A firing alert carries Go's zero time ("0001-01-01T00:00:00Z") here.
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("every alert needs an alertname label")
        return labels


class WebhookNotification(BaseModel):
    """Alertmanager's webhook body; unknown fields are ignored (newer Alertmanagers add some)."""

    model_config = ConfigDict(populate_by_name=True)

    version: Literal["4"]
    status: Status
    receiver: str
    alerts: list[WebhookAlert] = Field(min_length=1)
    group_key: str = Field("", alias="groupKey")
    truncated_alerts: int = Field(0, ge=0, alias="truncatedAlerts")
    group_labels: dict[str, str] = Field({}, alias="groupLabels")
    common_labels: dict[str, str] = Field({}, alias="commonLabels")
    common_annotations: dict[str, str] = Field({}, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")


class WebhookReceipt(BaseModel):
    severity: Severity
    status: Status
    alerts: int


def _rejection(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """(metric reason, message) for FastAPI's validation errors of this route."""
    for error in errors:
        if error["loc"][:1] == ("path",):
            return "unknown_severity", (
                f"unknown alert severity {error.get('input')!r}: Alertmanager webhooks go to "
                f"/alerts/<severity> with severity one of {', '.join(SEVERITIES)}")
    for error in errors:
        if error["type"] == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "")
            return "invalid_payload", f"request body is not valid JSON: {detail}".rstrip(": ")
        if tuple(error["loc"]) == ("body",):
            return "invalid_payload", ("the request body must be Alertmanager's notification, "
                                       "a JSON object sent as application/json; got "
                                       + _what_came(error))
    problems = []
    for error in errors[:_MAX_REPORTED_ERRORS]:
        where = ".".join(str(part) for part in error["loc"][1:]) or "body"
        problems.append(f"{where}: {error['msg']}")
    if len(errors) > _MAX_REPORTED_ERRORS:
        problems.append(f"... and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "invalid_payload", ("not an Alertmanager webhook notification (version 4): "
                               + "; ".join(problems))


def _what_came(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "an empty body"
    if isinstance(error.get("input"), bytes):
        return "a body of another content type"
    return f"a JSON {type(error.get('input')).__name__}"


class _ClearValidationErrors(APIRoute):
    """Turns this router's validation errors into one readable 422 message, and counts them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            # FastAPI reads and parses the body before it runs the dependencies (rate limit,
            # API key): without a valid key the answer to a bad body is 401 too, never a hint
            # about the payload.
            try:
                return await handler(request)
            except StarletteHTTPException as exc:  # FastAPI raises Starlette's class here
                if exc.status_code == 400:  # the body could not be read or decoded
                    require_api_key(request)
                raise
            except RequestValidationError as exc:
                require_api_key(request)
                reason, message = _rejection(list(exc.errors()))
                request.app.state.metrics.observe_rejected_notification(reason)
                log.info("rejected alert notification reason=%s path=%s", reason,
                         _quote(request.url.path))
                raise HTTPException(status_code=422, detail=message) from None

        return handle


def _quote(value: str) -> str:
    """A log field: redacted (a notification or path may carry anything), quoted unless bare."""
    value = privacy.redact_text(value)
    return value if _BARE.fullmatch(value) else json.dumps(value)


def _log_alert(route: str, receiver: str, alert: WebhookAlert) -> None:
    fields = {
        "alertname": alert.labels["alertname"],
        "severity": alert.labels.get("severity", route),
        "status": alert.status,
        "summary": alert.annotations.get("summary", ""),
        "runbook_url": alert.annotations.get("runbook_url", ""),
        "receiver": receiver,
        "starts_at": alert.starts_at.isoformat(),
        "fingerprint": alert.fingerprint,
    }
    quiet = alert.status == "resolved" or fields["severity"] == "info"
    log.log(logging.INFO if quiet else logging.WARNING, "alert %s",
            " ".join(f"{key}={_quote(value)}" for key, value in fields.items()),
            extra={"alert": fields})


router = APIRouter(route_class=_ClearValidationErrors)


@router.post("/alerts/{severity}", summary="Alertmanager webhook receiver",
             responses={422: {"description": "unknown severity or not an Alertmanager "
                                             "webhook notification"}})
async def receive_notification(severity: Severity, notification: WebhookNotification,
                               request: Request) -> WebhookReceipt:
    """Logs and counts one Alertmanager notification (`webhook_configs` URL
    `http://<api>/alerts/<severity>`). Answers at once; keeps no state."""
    for alert in notification.alerts:
        _log_alert(severity, notification.receiver, alert)
    request.app.state.metrics.observe_alert_notification(
        severity, notification.status, [alert.status for alert in notification.alerts])
    return WebhookReceipt(severity=severity, status=notification.status,
                          alerts=len(notification.alerts))
