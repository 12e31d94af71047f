"""Plain scikit-learn estimators: the two-stage cascade, column selection by name, and their small interface."""
