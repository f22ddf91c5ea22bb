"""langchain_omniguard: filled by its adapter issue."""
