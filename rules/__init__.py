"""Journeys: their definitions, how they run for each profile, and the guards every
action passes before it leaves.

* `rules.journeys`: a journey file parsed and validated into a frozen `Journey`
  (model, parse, load, canonical form and fingerprint).
* `rules.store`: the versioned journeys in Redis and `JourneyCatalog`, the engine's live
  view of them; `rules.live` the `LiveJourneys` type the runtime reads them through.
* `rules.runtime`: one profile's journeys (`ProfileJourneys`), pure: events in, `Intent`s
  out; it runs programs compiled by `rules.program`, evaluates triggers and conditions
  with `rules.evaluate`, and local times with `rules.calendar`.
* `rules.policy`: what the guards decide (requests, decisions, caps, action ids, Redis
  keys); `rules.guards` decides it atomically in Redis (``guards.lua``).
* `rules.actions`: the dataflow's guard step, from intents to `ActionRecord`s and action
  messages; `rules.breaker` pauses a journey whose complaint rate is too high.
"""

import flows  # noqa: F401  # first: under SCRM_PURE, compiled modules load from source
