"""Hooks for the conformance run (tests/conformance/run).

- Every request that carries an Idempotency-Key gets a fresh one, as a real client's
  retries-aside requests do: a key reused with another body is correctly refused (422
  `idempotency_key_reused`), which would hide what the run is looking for.
- Path ids are drawn half of the time from the resources the run seeded (CONFORMANCE_IDS),
  so operations on an existing order, user or key are exercised, not only their 404s; half
  of the orders placed name the seeded customer and product, so some are placed.
- `schema_valid_input_is_never_invalid`: a request that satisfies the published schema is
  never refused as `validation_failed`: that code means "breaks the rules the spec
  publishes", so getting it for schema-valid input means the spec and the server disagree.
"""

import hashlib
import json
import os
import uuid

import schemathesis
from hypothesis.internal import lambda_sources

# CPython 3.11.7 (this machine's) can fail `ast.parse` of a large module with "SystemError:
# AST constructor recursion depth mismatch" (fixed in 3.11.8). Hypothesis parses source
# only to describe a lambda in its messages; describe it as unknown instead of failing.
_describe_lambda = lambda_sources._lambda_description


def _lambda_description(f, *args, **kwargs):
    try:
        return _describe_lambda(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _lambda_description

SEEDED = json.loads(os.environ.get("CONFORMANCE_IDS", "{}"))


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = f"conformance-{uuid.uuid4()}"
    _seed_order(case)


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    path = ctx.operation.path
    seeded = next(
        (ident for prefix, ident in SEEDED.items() if path.startswith(prefix + "/{")),
        None,
    )
    if not path_parameters or seeded is None:
        return path_parameters
    # Half of the drawn ids, chosen by the id itself so that a case replays the same.
    name, drawn = next(iter(path_parameters.items()))
    if hashlib.sha256(str(drawn).encode()).digest()[0] % 2 == 0:
        return {**path_parameters, name: seeded}
    return path_parameters


def _seed_order(case):
    """Half of the valid orders name the seeded customer and product, so some are placed.
    Only valid ones: a case made invalid on purpose (negative testing) must stay so."""
    operation = case.operation
    if (operation.method.upper(), operation.path) != ("POST", "/v1/orders"):
        return
    if case.meta is None or str(case.meta.generation.mode).lower().endswith("negative"):
        return
    customer, product = SEEDED.get("customer"), SEEDED.get("/v1/products")
    body = case.body
    items = body.get("items") if isinstance(body, dict) else None
    if not customer or not product or not isinstance(items, list) or not items:
        return
    if not isinstance(items[0], dict):
        return
    if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()[0] % 2 == 0:
        case.body = {**body, "customer_id": customer, "items": [{**items[0], "product_id": product}]}


@schemathesis.check
def schema_valid_input_is_never_invalid(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    if problem.get("code") == "validation_failed":
        raise AssertionError(
            "A request that satisfies the published schema was refused as "
            f"validation_failed: {problem.get('detail')}"
        )
    return None
