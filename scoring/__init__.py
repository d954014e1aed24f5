"""Online scoring with River: models from config, delayed labels, progressive validation."""
