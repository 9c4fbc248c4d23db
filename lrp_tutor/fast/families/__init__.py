"""The operation families of the fast path, one module each; :mod:`lrp_tutor.fast.registry`
lists them."""
