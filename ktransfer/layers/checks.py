"""Argument checks shared by ktransfer's layers and the tasks built on them."""


def check_positive_int(value, name):
    """Return `value` if it is an int >= 1 (not a bool); else raise a ValueError naming `name`.

    Example:

    ```python
    from ktransfer.layers.checks import check_positive_int
    check_positive_int(3, "num_filters")  # 3
    ```
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {value!r}")
    return value
