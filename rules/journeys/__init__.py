"""Journey definitions, from a file to the frozen `Journey` the engine runs:

* `rules.journeys.model`: the dataclasses (triggers, branch conditions, nodes, the
  declared caps and quiet hours, `Journey`), the values their fields take, `walk`.
* `rules.journeys.parse`: `parse_journey`, the validator of one definition (plain data),
  and the description of the file format; `rules.journeys.parse_nodes` checks the node
  lists and branch conditions, `rules.journeys.checks` single values.
* `rules.journeys.load`: `load_journey` and `load_folder` read YAML / JSON files.
* `rules.journeys.canonical`: `to_canonical` (the definition as plain data, as stored in
  Redis) and `fingerprint`.
"""
