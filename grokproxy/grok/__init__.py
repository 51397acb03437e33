"""The grok.com adapter: the one place that knows grok.com's wire format.

settings (GrokSettings) -> catalog (ModelSpec per public model) -> client (GrokClient.open_turn:
one chat turn over the WebSocket gateway, `gateway.py` + `mgw.py`, or an HTTP dialect,
`payload.py` + `frames.py`) -> typed events (`events.py`) or GrokErrors (`errors.py`).
It never imports Flask.
"""
