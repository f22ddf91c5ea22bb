"""The shipped Colang 1 config folder (a package only so that installs carry its actions.py)."""
