-- Each run of `tenantry projections rebuild` (src/orders/projection.rs), written by the
-- command line as the owner when the run ends, successful or not. The command runs in a
-- process of its own, so its metrics could never reach a server's /metrics; every server
-- reads the runs from here instead (as the platform role) and serves them as
-- `projection_rebuilds_total{projection, outcome}` and
-- `projection_rebuild_duration_seconds{projection}`.
--
-- No tenant_id: a run may cover every tenant, and it records nothing of any tenant's data.
create table projection_rebuilds (
    id          bigint      generated always as identity primary key,
    -- The read models rebuilt: `orders` (order_summaries and order_items).
    projection  text        not null,
    outcome     text        not null,
    started_at  timestamptz not null,
    finished_at timestamptz not null,
    -- The orders projected, when it succeeded.
    orders      bigint,
    constraint projection_rebuilds_outcome check (outcome in ('ok', 'error')),
    constraint projection_rebuilds_finished check (finished_at >= started_at)
);
