"""Online scoring with River: models from config, delayed labels, progressive validation."""

import flows  # noqa: F401  # first: under SCRM_PURE, compiled modules load from source
