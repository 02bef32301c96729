"""The events namespace: the hub that fans events out, event source plugins and the
subscribe/unsubscribe calls."""
