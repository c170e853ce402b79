"""Plain values every layer shares (artifacts, tensor specs); imports no framework and no other layer."""
