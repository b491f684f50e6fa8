"""Alerts: decisions that match a route go out by webhook and e-mail, once each.

`fraudstream alerts run` is a consumer of its own group (``alerts``) on ``tx.decisions``, so
alerting never slows or blocks scoring. Routes (`routing`) pick the decisions and channels;
the customer (name, e-mail, phone, segment) and the amount are joined in from the SQL store
(`context`); each alert is tried ``alerts_attempts`` times with capped backoff (`retry`),
then dead-lettered; the store's ``alerts`` table logs one row per transaction and channel
(`deliveries`), which keeps a re-delivered decision from being alerted twice.

Webhook bodies are the `payload.Alert` as JSON, signed with HMAC-SHA256 over
``timestamp + "." + body`` (`signing`). A receiver checks them like this (the raw body, before
any JSON parsing)::

    from fraudstream.alerts.signing import verify_signature

    ok = verify_signature(
        secret,                                        # alerts_webhook_secret
        request.headers["X-Fraudstream-Timestamp"],
        body,                                          # the raw bytes received
        request.headers["X-Fraudstream-Signature"],    # "v1=<hex>"
        tolerance_s=300,                               # refuse replays older than 5 min
    )

or, without fraudstream installed::

    import hashlib, hmac, time
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    ok = (abs(time.time() - int(timestamp)) <= 300
          and hmac.compare_digest(signature, "v1=" + expected))
"""
