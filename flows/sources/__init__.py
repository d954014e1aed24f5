"""Where events come from: Kafka, file replay (JSONL / CSV), or the synthetic generator.

Every source emits `RawRecord`s (bytes plus where they came from) so validation, the
dead letters and the metrics treat all of them alike. Every source obeys one
`RunControl`: a bounded run (``--max-events``, ``--duration``) or Ctrl-C ends the input
(EOF), which lets each sink flush and the dataflow finish cleanly; nothing is stopped
from a sink.

Delivery: the sources are Bytewax *stateful* partitions. With recovery on, their
position (Kafka offset, file byte offset, generator state) is snapshotted with the
rest of the state, so a restart resumes where the last snapshot was taken
(at-least-once; eventId dedupe and the ReplacingMergeTree keys absorb the replay).
"""
