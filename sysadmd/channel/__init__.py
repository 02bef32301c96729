"""One client connection's rules, whatever carries its bytes: authentication and idle
timers, message limits, requests in flight, routing and the bounded outgoing queue.
Direct WebSocket clients, clients relayed by a bridge and REST requests all use it."""
