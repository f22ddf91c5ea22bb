"""llama_index_omniguard: filled by its adapter issue."""
