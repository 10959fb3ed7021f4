"""Verify one webhook request with the reference `standardwebhooks` library.

Reads {"secret": ..., "headers": {...}, "body": "<text>"} on stdin; exits 0
when the signature verifies, 1 with the library's error otherwise.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
try:
    Webhook(request["secret"]).verify(request["body"], request["headers"])
except Exception as error:  # the library raises its own WebhookVerificationError
    print(f"verification failed: {error}", file=sys.stderr)
    sys.exit(1)
