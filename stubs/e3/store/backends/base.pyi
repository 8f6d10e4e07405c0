import abc
from typing import NamedTuple

from e3.error import E3Error
from e3.log import E3LoggerAdapter
from e3.store.cache.backends.base import Cache

logger: E3LoggerAdapter

class ResourceInfo(metaclass=abc.ABCMeta):
    @property
    @abc.abstractmethod
    def uid(self) -> str: ...
    @abc.abstractmethod
    def verify(self, resource_path: str) -> bool: ...

class CachedResource(NamedTuple):
    uid: str
    local_path: str

class StoreError(E3Error): ...

class Store(metaclass=abc.ABCMeta):
    # e3-core stores whatever it is given.
    store_configuration: object
    cache_backend: Cache
    def __init__(self, store_configuration: object, cache_backend: Cache) -> None: ...
    @abc.abstractmethod
    def get_resource_metadata(self, query: dict[str, str]) -> ResourceInfo: ...
    def download_resource(self, metadata: ResourceInfo, dest: str) -> str | None: ...
    @abc.abstractmethod
    def download_resource_content(
        self, metadata: ResourceInfo, dest: str
    ) -> str | None: ...
