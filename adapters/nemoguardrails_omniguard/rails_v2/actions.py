"""Makes ``RailsConfig.from_path`` on this folder find the OmniGuard actions: NeMo loads a
config folder's ``actions.py`` by file path and registers every ``@action`` it sees here."""

from nemoguardrails_omniguard.actions import *  # noqa: F403 - NeMo registers each @action it finds here
