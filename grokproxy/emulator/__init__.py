"""A standalone fake grok.com for tests, demos and benchmarks (see README.md in this folder).

Modules: `frames` (pure frame/body builders shaped like upstream), `dialects` (chat-body
validation per era), `accounts` (token → account, quotas, faults by token prefix), `content`
(deterministic reply text and images), `app` (aiohttp routes and streaming), `testing`
(`running_emulator()` for tests), `loadcheck` (N concurrent slow streams, CPU/RSS report).
"""
