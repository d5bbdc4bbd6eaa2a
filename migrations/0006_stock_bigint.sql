-- Stock as bigint. The API accepts a stock of at most 2^31 - 1 (its input type stays a
-- 32-bit integer), but cancelling an order gives its units back on top of whatever the
-- stock is by then — raised to the limit meanwhile, that overflowed `integer` (22003) and
-- left the order uncancellable. A 64-bit stock cannot be pushed past its range by any
-- realistic sequence of restocks and cancellations.
--
-- The type change rewrites the table under an exclusive lock: quick for a catalog, but
-- it blocks orders on the table while it runs.
alter table products alter column stock type bigint;
