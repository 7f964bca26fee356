"""Deep copies of API objects.

Objects are JSON values (dicts, lists, strings, numbers, booleans, None); a pickle round trip copies
them about four times faster than ``copy.deepcopy``, which matters because every write to the store
copies the object it writes.
"""

from __future__ import annotations

import pickle
from typing import TypeVar

T = TypeVar("T")


def clone(value: T) -> T:
    copied: T = pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    return copied
