"""Storage-event triggers: sources (local directory, dCache SSE, S3 notifications), a durable
inbox/outbox, an idempotency ledger and the deliverer that runs bound functions on each event.

The flow is ``source -> Intake (inbox + outbox rows, one transaction) -> Deliverer (backend) ->
ledger``; see ``docs/decisions/triggers-delivery-guarantees.md``.
"""
