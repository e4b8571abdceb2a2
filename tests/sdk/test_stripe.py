"""Stripe's official `stripe` Python package against the gateway's payments:
its webhook verifier accepts what the mock Stripe signs (the signing code the
gateway verifies with), the gateway accepts what the library signs, each
refuses a tampered payload, and the library's own client creates a Checkout
Session on the mock, which a payment then credits through the webhook."""

import http.server
import json
import os
import queue
import threading
import time
import urllib.error
import urllib.request

import pytest
import stripe

GATEWAY = os.environ["GATEWAY_URL"]
MOCK = os.environ["MOCK_URL"]
SECRET = os.environ["STRIPE_WEBHOOK_SECRET"]


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


NO_REDIRECTS = urllib.request.build_opener(NoRedirects)


def post(url, body, headers=None):
    """POSTs bytes, following no redirect; returns (status, the JSON body,
    or None when it is not JSON)."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with NO_REDIRECTS.open(request) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    try:
        return status, json.loads(text or b"null")
    except ValueError:
        return status, None


def set_endpoint(url):
    body = json.dumps({"url": url, "secret": SECRET}).encode()
    status, _ = post(f"{MOCK}/mock/stripe/endpoint", body, {"Content-Type": "application/json"})
    assert status == 204


def library_signature(payload: str, secret: str, timestamp: int) -> str:
    """A Stripe-Signature header made by the library's own signing code."""
    signed = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload}", secret)
    return f"t={timestamp},v1={signed}"


def event(event_id, kind, obj):
    return json.dumps({"id": event_id, "object": "event", "type": kind, "data": {"object": obj}})


@pytest.fixture
def captured():
    """A local endpoint the mock Stripe delivers to; yields the deliveries."""
    deliveries = queue.Queue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            deliveries.put((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    set_endpoint(f"http://127.0.0.1:{server.server_port}/hook")
    yield deliveries
    server.shutdown()
    set_endpoint(f"{GATEWAY}/webhooks/stripe")


def test_the_library_verifies_what_the_mock_signs(captured):
    client = stripe.StripeClient("sk_test_sdk", base_addresses={"api": MOCK})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "success_url": "https://example.com/ok",
            "cancel_url": "https://example.com/no",
            "line_items": [
                {"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 700,
                                               "product_data": {"name": "Credit"}}},
            ],
        }
    )
    assert session.id.startswith("cs_test")
    assert session.amount_total == 700
    status, _ = post(f"{MOCK}/checkout/{session.id}/pay", b"")
    assert status == 303
    body, header = captured.get(timeout=10)
    verified = stripe.Webhook.construct_event(body.decode(), header, SECRET)
    assert verified.type == "checkout.session.completed"
    assert verified.data.object.id == session.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.decode().replace("700", "701"), header, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.decode(), header, "whsec_another")


def test_the_gateway_verifies_what_the_library_signs():
    payload = event("evt_sdk_unknown", "checkout.session.completed",
                    {"id": "cs_sdk_unknown", "payment_status": "paid", "amount_total": 500,
                     "currency": "usd", "payment_intent": "pi_sdk"})
    now = int(time.time())
    header = library_signature(payload, SECRET, now)
    headers = {"Content-Type": "application/json", "Stripe-Signature": header}
    status, body = post(f"{GATEWAY}/webhooks/stripe", payload.encode(), headers)
    assert status == 200, body
    assert body["outcome"] == "ignored"  # a session the gateway never opened
    status, body = post(f"{GATEWAY}/webhooks/stripe", payload.encode(), headers)
    assert (status, body.get("duplicate")) == (200, True)
    for bad in (library_signature(payload, "whsec_another", now),
                library_signature(payload, SECRET, now - 600)):
        headers["Stripe-Signature"] = bad
        status, body = post(f"{GATEWAY}/webhooks/stripe", payload.encode(), headers)
        assert status == 400, body
        assert "signature" in body["error"]["message"]


def test_a_payment_through_the_mock_credits_the_account():
    set_endpoint(f"{GATEWAY}/webhooks/stripe")
    jar = urllib.request.HTTPCookieProcessor()
    opener = urllib.request.build_opener(jar)
    origin = {"Content-Type": "application/json", "Origin": GATEWAY}

    def call(method, path, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(GATEWAY + path, data=data, headers=origin, method=method)
        with opener.open(request) as response:
            return json.loads(response.read())

    call("POST", "/api/auth/signup", {"email": "stripe-sdk@example.com",
                                      "password": "correct horse battery"})
    before = call("GET", "/api/balance")["balance"]
    charged = call("POST", "/api/balance/charge", {"amount": "20"})
    assert charged["checkout_url"].startswith(MOCK)
    status, _ = post(charged["checkout_url"] + "/pay", b"")
    assert status == 303
    after = call("GET", "/api/balance")["balance"]
    assert after - before == 20 * 10**9
