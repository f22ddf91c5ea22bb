"""The shipped Colang 2 config folder (a package only so that installs carry its actions.py)."""
