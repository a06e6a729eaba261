"""The schema, in SQLAlchemy Core. Migrations in `migrations/` must produce exactly this.

Costs are integers in billionths of the currency unit (`cost_nanos`): exact sums in any SQL
database without floating point or dialect-specific decimal types.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("allowed_models", JSON, nullable=True),
    Column("budget_amount", Numeric(18, 6), nullable=True),
    Column("budget_currency", String(8), nullable=True),
    Column("budget_period", String(16), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("team", String(200), nullable=True),
    Column("data_class", String(64), nullable=True),
    Column("requests_per_minute", Integer, nullable=True),
    Column("tokens_per_minute", Integer, nullable=True),
    Column("cache_ttl_seconds", Integer, nullable=True),
    Column("default_task", String(128), nullable=True),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("key_name", String(200), nullable=True),
    Column("model_alias", String(256), nullable=True),
    Column("requested_model", String(256), nullable=True),
    Column("deployment", String(256), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("jurisdiction", String(32), nullable=True),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("usage_reported", Boolean, nullable=False),
    Column("usage_estimated", Boolean, nullable=False, server_default=false()),
    Column("cost_nanos", BigInteger, nullable=True),
    Column("currency", String(8), nullable=True),
    Column("price_date", String(10), nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("ttft_ms", Integer, nullable=True),
    Column("status", Integer, nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("team", String(200), nullable=True),
    Column("data_class", String(64), nullable=True),
    Column("findings", JSON, nullable=True),
    Column("attempts", JSON, nullable=True),
    Column("cache_hit", Boolean, nullable=False, server_default=false()),
    Column("limits_degraded", Boolean, nullable=False, server_default=false()),
    Column("task", String(128), nullable=True),
    Column("evidence_id", String(64), nullable=True),
    Column("refused_by_model", Boolean, nullable=False, server_default=false()),
    Column("shadow_of", String(64), nullable=True),
    Column("weights_sha256", String(64), nullable=True),
    Column("adapter_sha256", String(64), nullable=True),
    Index("ix_usage_created_at", "created_at"),
    Index("ix_usage_model_alias", "model_alias"),
    # A budget's spend since its period began (`spend_since`), per key and per team: on
    # PostgreSQL the index holds what the sum reads, so it never visits the table.
    Index(
        "ix_usage_key_created",
        "key_id",
        "created_at",
        postgresql_include=["currency", "cost_nanos"],
    ),
    Index(
        "ix_usage_team_created",
        "team",
        "created_at",
        postgresql_include=["currency", "cost_nanos"],
    ),
)

# Usage summed per UTC day, key, model and currency, kept by a trigger on `usage_records` in the
# transaction that inserts the rows (migration 0007): `entrepot usage` reads these few rows, not
# the whole ledger. A missing key, model or currency is stored as "" (primary key columns cannot
# be NULL).
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("key_name", String(200), primary_key=True),
    Column("model_alias", String(256), primary_key=True),
    Column("currency", String(8), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
)

# Responses API answers (`GET /v1/responses/{id}`, `previous_response_id`). `owner` is the key
# ("key:<id>") or "anonymous"; `created_at` is in Unix seconds, as the Response object has it, so
# retention is one integer comparison on any database. `input_items` is the whole conversation
# the response answered, so a continuation reads one row, however long the chain.
responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("response", JSON, nullable=False),
    Column("input_items", JSON, nullable=False),
    Index("ix_responses_created_at", "created_at"),
)

# Published bench results (`entrepot bench --publish`), which `good_enough` routes choose by: per
# model and task, the score and its interval, the quality relative to the run's reference model
# (a paired interval: the lower bound is what a route's `min_quality` is compared with), what an
# item cost, and a fingerprint of the prices used, so evidence priced at other rates is stale.
bench_evidence = Table(
    "bench_evidence",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("task", String(128), nullable=False),
    Column("model_alias", String(256), nullable=False),
    Column("reference_alias", String(256), nullable=False),
    Column("items", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("score_low", Float, nullable=False),
    Column("score_high", Float, nullable=False),
    Column("relative", Float, nullable=True),
    Column("relative_low", Float, nullable=True),
    Column("relative_high", Float, nullable=True),
    Column("cost_per_item_nanos", BigInteger, nullable=True),
    Column("currency", String(8), nullable=True),
    Column("price_date", String(10), nullable=True),
    Column("price_fingerprint", String(64), nullable=True),
    Index("ix_bench_evidence_task_model", "task", "model_alias", "published_at"),
)

# Shadow verification (a route's `shadow`): one row per request copied to the route's candidate
# — or that could not be (`status`: ineligible, over_budget, failed) — with both answers until
# the route's `retention_days` have passed (then set to NULL), and for good the costs in one
# `currency` and the grade: `difference`, the candidate's score minus the incumbent's, in
# [-1, 1], by a task grader or a judge (`graded_by`).
shadow_pairs = Table(
    "shadow_pairs",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("copy_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("route", String(256), nullable=False),
    Column("task", String(128), nullable=True),
    Column("incumbent", String(256), nullable=False),
    Column("candidate", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("incumbent_answer", Text, nullable=True),
    Column("candidate_answer", Text, nullable=True),
    Column("incumbent_cost_nanos", BigInteger, nullable=True),
    Column("candidate_cost_nanos", BigInteger, nullable=True),
    Column("grading_cost_nanos", BigInteger, nullable=True),
    Column("currency", String(8), nullable=True),
    Column("price_date", String(10), nullable=True),
    Column("graded_by", String(300), nullable=True),
    Column("difference", Float, nullable=True),
    Index("ix_shadow_pairs_route_created", "route", "created_at"),
)

# Fingerprints of models (`entrepot fingerprint`): one row per run, a `take` (the reference) or a
# `check` against the take named by `fingerprint_id`, with what a check found (`exact_share`,
# `similarity`, the noise `floor` and its `floor_spread`, the `margin`, and whether the model was
# probably `substituted`, with the `reason`); NULL for a take.
fingerprint_runs = Table(
    "fingerprint_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model_alias", String(256), nullable=False),
    Column("deployment", String(256), nullable=True),
    Column("canary_set", String(32), nullable=False),
    Column("samples", Integer, nullable=False),
    Column("key_name", String(200), nullable=True),
    Column("fingerprint_id", String(64), nullable=True),
    Column("exact_share", Float, nullable=True),
    Column("similarity", Float, nullable=True),
    Column("floor", Float, nullable=True),
    Column("floor_spread", Float, nullable=True),
    Column("margin", Float, nullable=True),
    Column("substituted", Boolean, nullable=True),
    Column("reason", Text, nullable=True),
    Index("ix_fingerprint_runs_model", "model_alias", "kind", "created_at"),
)

# Each answer of a run: per sample (the canaries are asked `samples` times) and canary, the text,
# its token counts and the deployment that answered.
fingerprint_answers = Table(
    "fingerprint_answers",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("sample", Integer, primary_key=True),
    Column("canary", String(64), primary_key=True),
    Column("answer", Text, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("deployment", String(256), nullable=True),
    Column("finish_reason", String(32), nullable=True),
)

# The console's rollups (migration 0010), kept by triggers on `usage_records` in the transaction
# that inserts the rows, as `usage_daily` is. Per UTC hour ("YYYY-MM-DD HH") and every dimension
# the console splits by ("" for a missing one; `status_class` is the status's hundreds): totals,
# and cumulative histograms of latency and time to first token (`latency_le_<ms>` counts the
# requests that took at most that long; `ttft_requests` those that measured it).
LATENCY_BOUNDS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("hour", String(13), primary_key=True),
    Column("key_name", String(200), primary_key=True),
    Column("team", String(200), primary_key=True),
    Column("model_alias", String(256), primary_key=True),
    Column("endpoint", String(32), primary_key=True),
    Column("jurisdiction", String(32), primary_key=True),
    Column("data_class", String(64), primary_key=True),
    Column("status_class", Integer, primary_key=True),
    Column("currency", String(8), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
    Column("latency_ms", BigInteger, nullable=False),
    Column("ttft_requests", BigInteger, nullable=False),
    Column("ttft_ms", BigInteger, nullable=False),
    *(Column(f"latency_le_{b}", BigInteger, nullable=False) for b in LATENCY_BOUNDS_MS),
    *(Column(f"ttft_le_{b}", BigInteger, nullable=False) for b in LATENCY_BOUNDS_MS),
    sqlite_with_rowid=False,  # a range of hours read in one pass, in key order
)

# Per UTC hour, the requests the egress rules kept from a deployment, by the rule that fired
# (the verdict's sentence: rule and deployment, never the request's content): `outcome` is
# "denied" (a 403: no deployment was allowed) or "rerouted" (another one served it).
usage_hourly_egress = Table(
    "usage_hourly_egress",
    metadata,
    Column("hour", String(13), primary_key=True),
    Column("key_name", String(200), primary_key=True),
    Column("team", String(200), primary_key=True),
    Column("model_alias", String(256), primary_key=True),
    Column("data_class", String(64), primary_key=True),
    Column("outcome", String(16), primary_key=True),
    Column("reason", String(1000), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)
