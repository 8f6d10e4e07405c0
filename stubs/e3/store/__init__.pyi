from e3.store.backends.base import Store
from e3.store.cache.backends.base import Cache

def load_store(name: str, configuration: object, cache: Cache) -> Store: ...
