"""Migration rules as data: which tensors are Conv1d weights, how names map between frameworks.

Nothing here reads or writes files or knows the CLI: rules look at names, shapes and dtypes.
"""
