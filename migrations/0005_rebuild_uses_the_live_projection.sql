-- `tenantry projections rebuild` writes summaries with the same upsert the live path uses
-- (src/orders/store.rs). `on conflict do update` needs UPDATE even when nothing conflicts;
-- the platform role already inserts and deletes these rows, so this widens nothing that
-- matters and lets one statement serve both paths.
grant update on order_summaries to tenantry_platform;
