"""The seeded synthetic customer generator (``customers.SyntheticCustomers``).

``customers`` holds the configuration and the loop (who acts, what they do next, noise);
the rest is what it is made of: ``vocabulary`` (the fixed tables), ``traits`` (hidden
traits and the churn and win rules), ``profile`` (one customer's state), ``roster`` (who
acts, churn silences), ``identity`` and ``envelope`` (identifiers, event ids, encoding),
one module per event family (``shopping``, ``messaging``, ``service``, ``sales``) and
``noise`` (malformed outputs).
"""
