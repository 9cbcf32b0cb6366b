"""The OpenAPI 3.0 description of `parley api` (served at ``/openapi.json``).

Kept beside the handlers it describes; a test checks that it is valid OpenAPI, that it names
every JSON route, and that every route it names answers 200.
"""

from __future__ import annotations

from typing import Any

MAX_LIMIT = 1000
REF = "#/components/schemas/"
_S, _I = {"type": "string"}, {"type": "integer"}
_NS, _NI, _NN = ({"type": t, "nullable": True} for t in ("string", "integer", "number"))
_NB = {"type": "boolean", "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": True}


def _listing(key: str, item: str) -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {key: _array(_ref(item))}}


def _param(name: str, desc: str, where: str = "query", schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": desc,
            "schema": schema or _S}


def _int_param(name: str, desc: str, hi: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": 0}
    if hi is not None:
        schema["maximum"] = hi
    return _param(name, desc, schema=schema)


KPI_FILTER = [
    _param("from", "Start of the period (UTC), inclusive: 2026-01-01, 2026-01-01T08:00 or epoch ms."),
    _param("to", "End of the period (UTC), exclusive; same forms as from."),
    _param("tenant", "Only this tenant."), _param("channel", "Only this channel."),
    _param("queue", "Only this queue."), _param("agent", "Only this agent."),
]
PAGE = [_int_param("limit", f"At most this many rows (default 50, max {MAX_LIMIT}).", MAX_LIMIT),
        _int_param("offset", "Skip this many rows.")]
DIMENSION = _param("dimension", "overall, channel, queue or agent.",
                   schema={"type": "string", "enum": ["overall", "channel", "queue", "agent"]})


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(summary: str, params: list[dict], schema: str, tag: str, not_found: bool = False) -> dict:
    responses = {"200": _json(_ref(schema), "OK"), "400": _json(_ref("Error"), "Bad parameter")}
    if not_found:
        responses["404"] = _json(_ref("Error"), "Not found")
    return {"get": {"summary": summary, "tags": [tag], "parameters": params, "responses": responses}}


def paths() -> dict[str, Any]:
    tenant = _param("tenant", "Tenant id.", "path")
    return {
        "/api/customers": _get("List customer profiles, most recent contact first.",
                               [_param("tenant", "Only this tenant."), _param("q", "Name or id contains."), *PAGE],
                               "CustomerList", "customers"),
        "/api/customers/{tenant}/{customer_id}": _get(
            "One unified profile: identities per channel, context, threads.",
            [tenant, _param("customer_id", "Customer id.", "path")], "CustomerProfile", "customers", True),
        "/api/threads": _get("List threads, most recent message first.",
                             [_param("tenant", "Only this tenant."), _param("customer_id", "Only this customer."),
                              _param("status", "open, queued, assigned, resolved."),
                              _param("queue", "Only this queue."), _param("assignee", "Only this agent."), *PAGE],
                             "ThreadList", "threads"),
        "/api/threads/{tenant}/{thread_id}": _get(
            "One thread with every message in event-time order across channels.",
            [tenant, _param("thread_id", "Thread id.", "path")], "ThreadDetail", "threads", True),
        "/api/kpi/intervals": _get("KPI figures per 15-minute interval (streaming IntervalStat).",
                                   [*KPI_FILTER, DIMENSION, _param("value", "The dimension's value.")],
                                   "IntervalList", "kpi"),
        "/api/kpi/summary": _get("The period's figures overall and per channel.", KPI_FILTER, "Summary", "kpi"),
        "/api/kpi/agents": _get("Per agent: online, idle, occupancy, time-weighted concurrency, peak, "
                                "time at each level.", KPI_FILTER,
                                "AgentList", "kpi"),
        "/api/kpi/contacts": _get("Contact measures (one row per contact).",
                                  [*KPI_FILTER, _int_param("limit", "At most this many (default 1000).", 100_000)],
                                  "ContactList", "kpi"),
        "/api/deliveries": _get("Outbound messages per channel by delivery status (receipt, else the egress's "
                                "send status) and failure code, for messages sent in the period.",
                                [p for p in KPI_FILTER if p["name"] in ("from", "to", "tenant", "channel")],
                                "DeliverySummary", "threads"),
        "/api/dashboard": _get("Everything the dashboard draws.", KPI_FILTER, "Dashboard", "kpi"),
        "/healthz": _get("Liveness, and the schema migrations applied.", [], "Health", "ops"),
    }


def _profile_schemas() -> dict[str, Any]:
    return {
        "Customer": _obj(tenant_id=_S, customer_id=_S, name=_NS, tier=_NS, lifecycle_stage=_NS,
                         languages=_array(_S), first_contact_at=_NI, last_contact_at=_NI,
                         thread_count=_I, open_thread_count=_I, last_sentiment_label=_NS,
                         attributes={"type": "object", "additionalProperties": True}, merged_into=_NS),
        "CustomerList": _listing("customers", "Customer"),
        "CustomerProfile": {"allOf": [_ref("Customer"), _obj(
            identities={"type": "object", "additionalProperties": _array(_ref("Identity"))},
            merged_customers=_array(_S), threads=_array(_ref("Thread")))]},
        "Identity": _obj(identity_key=_S, customer_id=_S, kind=_S, channel=_NS, value=_S, display_name=_NS,
                         signal=_NS, linked_at=_NI, first_seen_at=_NI, last_seen_at=_NI),
        "Thread": _obj(tenant_id=_S, thread_id=_S, customer_id=_NS, status=_NS, subject=_NS, queue=_NS,
                       assignee=_NS, priority=_I, channels=_array(_S), started_at=_NI,
                       resolved_at=_NI, message_count=_I, last_sentiment_label=_NS,
                       window_channel=_NS, window_account=_NS, window_last_inbound_at=_NI, window_closes_at=_NI,
                       window_human_agent_closes_at=_NI, delivery_failures=_I,
                       last_delivery_failure={"type": "object", "nullable": True, "additionalProperties": True}),
        "ThreadList": _listing("threads", "Thread"),
        "Message": _obj(event_id=_S, direction=_S, channel=_S, author_type=_S, author_id=_NS, text=_NS,
                        occurred_at=_I, sentiment_label=_NS, language=_NS, delivery_status=_NS,
                        delivery_status_at=_NI, send_status=_NS, send_attempts=_NI, delivery_error_code=_NS,
                        delivery_error_reason=_NS, provider_message_id=_NS,
                        delivery_rendering={"type": "object", "nullable": True, "additionalProperties": True}),
        "ThreadDetail": {"allOf": [_ref("Thread"), _obj(messages=_array(_ref("Message")))]},
    }


def _kpi_schemas() -> dict[str, Any]:
    figures = _obj(offered=_I, answered=_I, resolved=_I, sl_300=_ref("ServiceLevel"),
                   sl_20=_ref("ServiceLevel"), frt_mean_ms=_NN, frt_p50_ms=_NN, frt_p90_ms=_NN,
                   reply_gap_mean_ms=_NN, negative_share=_NN, threads=_NI, bot_contained=_NI,
                   bot_containment=_NN)
    levels = {"type": "object", "additionalProperties": {"type": "number"},
              "description": "ms online at each number of open assigned conversations"}
    return {
        "Interval": _obj(tenant_id=_S, interval_start=_I, interval=_S, dimension=_S, dimension_value=_S,
                         metrics={"type": "object", "additionalProperties": _NN},
                         sl_300=_NN, sl_20=_NN, met_300=_NB, met_20=_NB),
        "IntervalList": _listing("intervals", "Interval"),
        "ServiceLevel": _obj(t_s=_I, sl=_NN, target=_NN, met=_NB, within=_I, after=_I,
                             abandoned=_I, waiting_over=_I, short_abandoned=_I, pending=_I,
                             excluded=_I),
        "Figures": figures,
        "Summary": _obj(as_of=_NI, overall=_ref("Figures"),
                        channels={"type": "object", "additionalProperties": _ref("Figures")}),
        "Agent": _obj(agent_id=_S, online_ms=_I, idle_ms=_I, open_conversation_ms=_I, concurrency=_NN,
                      occupancy=_NN, peak_concurrency=_I, time_at_level_ms=levels),
        "AgentRow": {"allOf": [_ref("Agent"), _obj(answered=_I, frt_p50_ms=_NN, frt_p90_ms=_NN)]},
        "AgentList": _listing("agents", "Agent"),
        "Contact": _obj(tenant_id=_S, contact_id=_S, channel=_NS, queue=_NS, agent_id=_NS, interval_start=_I,
                        started_at=_I, first_human_reply_at=_NI, frt_ms=_NI, status=_NS),
        "ContactList": _listing("contacts", "Contact"),
        "Dashboard": _obj(
            as_of=_NI, summary=_ref("Figures"),
            channels={"type": "object", "additionalProperties": _ref("Figures")},
            team=_obj(agents=_I, online_ms=_I, idle_ms=_I, open_conversation_ms=_I,
                      concurrency=_NN, occupancy=_NN, time_at_level_ms=levels),
            agents=_array(_ref("AgentRow")),
            sl_by_interval=_obj(source=_S, points=_array(_obj(interval_start=_I, sl_300=_NN, sl_20=_NN))),
            waiting_by_interval=_array(_obj(
                interval_start=_I, interval=_S, mean=_NN, peak=_I,
                by_queue={"type": "object", "additionalProperties": _NN})),
            frt_histogram=_array(_obj(from_s=_I, to_s=_NI, label=_S, count=_I)),
            volumes_by_channel=_array(_obj(channel=_S, offered=_I, answered=_I)),
            sentiment_by_interval=_array(_obj(interval_start=_I, negative=_I, neutral=_I, positive=_I))),
    }


def openapi_spec() -> dict[str, Any]:
    """The whole description."""
    schemas = {"Error": {"type": "object", "required": ["error"], "properties": {"error": _S}},
               "Health": _obj(status=_S, migrations=_array(_I)),
               "DeliverySummary": _listing("channels", "ChannelDelivery"),
               "ChannelDelivery": _obj(channel=_S, total=_I,
                                       statuses={"type": "object", "additionalProperties": _I},
                                       failures={"type": "object", "additionalProperties": _I}),
               **_profile_schemas(), **_kpi_schemas()}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Parley analyst API", "version": "1",
                 "description": "Read-only views over the Parley projections: unified customer "
                                "profiles, threads with their messages, KPI tables. Times are epoch "
                                "milliseconds UTC in event time."},
        "paths": paths(),
        "components": {"schemas": schemas},
    }
