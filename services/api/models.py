"""OpenAPI models of /dashboard's pipeline status (documentation and schema checks only: the
route builds plain dicts, see summary.py and freshness.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DegradedComponent(BaseModel):
    component: str = Field(description="collector, jaeger, api, prometheus, agent metrics, or "
                                       "the job name of another scrape target")
    reason: str
    since: str | None = Field(description="RFC 3339, from Prometheus' own samples (the first "
                                           "failed scrape, the first sample of a queue backlog, "
                                           "the last sample received); null when unknown")
    affects: list[str] = Field(description="what this puts at risk: metrics, traces")


class MissingData(BaseModel):
    job: str
    instance: str
    from_: str = Field(alias="from", description="the source's last sample (RFC 3339)")
    to: str = Field(description="the window end")


class InexactStart(BaseModel):
    job: str
    instance: str
    from_: str = Field(alias="from", description="the source's last sample before the window "
                                                 "start: its counts begin there")
    to: str = Field(description="the window start")
    edge: Literal["start"]


class Partial(BaseModel):
    reason: str
    missing: list[MissingData] = Field(description="sources whose newest data has not arrived")
    inexact_start: list[InexactStart] = Field(
        description="sources with a hole in their data across the window start")


class StaleSource(BaseModel):
    job: str
    instance: str
    last_sample: str
    age_s: float
    export_interval_s: float = Field(description="measured from the source's recent samples")
    missing: bool = Field(description="true: its data is held up by the pipeline; false: it "
                                      "stopped sending while the pipeline was healthy")


class Freshness(BaseModel):
    newest_sample: str | None
    sources: int = Field(description="agent processes (job, instance) with data in the window")
    stale: list[StaleSource]
    stale_count: int


class HistoryPoint(BaseModel):
    time: str = Field(description="RFC 3339: the point's instant (its range ends there)")
    success_rate: float | None
    error_rate: float | None
    latency_p95_ms: float | None = Field(description="null, never 0, where no execution "
                                                     "finished in the point's range, or its "
                                                     "data has not arrived")


class History(BaseModel):
    """`?history=true`: the golden signals the page charts, over the window, one point every
    `step_s` (at most 120), each over the `range_s` up to it. Null points are gaps (idle, a
    hole in the data, or data not yet arrived while `partial`), never zeros."""

    start: str
    end: str
    step_s: int
    range_s: int
    partial: bool
    missing_since: str | None = Field(description="while partial: points after this instant "
                                                  "are null (their data has not arrived)")
    points: list[HistoryPoint]


class LLMModelUsage(BaseModel):
    provider: str = Field(description="gen_ai.provider.name")
    model: str = Field(description="gen_ai.request.model")
    calls: int
    errors: int = Field(description="calls that ended with an error.type (429, timeout, ...)")
    input_tokens: int
    output_tokens: int
    cost_usd: float = Field(description="tokens times the price table, in US dollars")
    unpriced_calls: int = Field(description="calls of a model without a price (not in cost_usd)")


class LLMSummary(BaseModel):
    """LLM calls in the window, from the GenAI client metrics and cugar.llm.cost."""

    calls: int
    errors: int
    error_rate: float | None = Field(description="errors / calls; null without calls or "
                                                 "while the window is partial")
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_calls: int
    by_model: list[LLMModelUsage] = Field(description="most expensive first")


class DashboardSummary(BaseModel):
    """The summary. `status` is "degraded" whenever `degraded` lists anything; while `partial`
    is set, the golden signals' ratios, quantiles and means are null and the counts are lower
    bounds."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded"]
    degraded: list[DegradedComponent]
    partial: Partial | None
    freshness: Freshness
    time_range: dict[str, Any]
    golden_signals: dict[str, Any]
    executions: dict[str, Any]
    history: History | None = Field(None, description="only with ?history=true")
    llm: LLMSummary


class Unavailable(BaseModel):
    """503: Prometheus cannot be reached, so no number can be given."""

    detail: str
    status: Literal["unavailable"]
    degraded: list[DegradedComponent]
