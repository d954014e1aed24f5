"""Journeys: definitions, trigger evaluation, and the guards (caps, dedupe, quiet hours,
suppression, consent) held atomically in Redis.

Not built yet: this package is the home of the journeys issue.
"""
