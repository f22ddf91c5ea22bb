TINY_TRIGGERS = {}
def build_tiny_checkpoint(*a, **k): raise NotImplementedError
def tiny_checkpoint(*a, **k): raise NotImplementedError
