"""The live fleet as this gateway process sees it, fed by worker beats."""
