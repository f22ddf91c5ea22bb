"""Makes ``RailsConfig.from_path`` on this folder find the OmniGuard actions: NeMo loads a
config folder's ``actions.py`` by file path and registers every ``@action`` it sees here."""

from nemoguardrails_omniguard.actions import omniguard_check_input, omniguard_check_output

__all__ = ["omniguard_check_input", "omniguard_check_output"]
