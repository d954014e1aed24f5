"""River models that score churn and opportunity-win probability in the stream.

Not built yet: this package is the home of the scoring issue (model definitions from
``config/models.toml``, delayed labels, progressive validation, checkpoints, explanations).
"""
