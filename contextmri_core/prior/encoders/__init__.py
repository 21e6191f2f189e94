"""Condition encoders behind one interface: ``ScanMetadata`` list -> ``(B, L, D)`` tokens."""
