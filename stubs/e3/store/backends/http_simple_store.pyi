from e3.log import E3LoggerAdapter
from e3.store.backends.base import ResourceInfo, Store
from typing_extensions import override

logger: E3LoggerAdapter

class HTTPSimpleStoreResourceInfo(ResourceInfo):
    url: str
    sha: str
    def __init__(self, url: str, sha: str) -> None: ...
    @override
    def verify(self, resource_path: str) -> bool: ...
    @property
    @override
    def uid(self) -> str: ...

class HTTPSimpleStore(Store):
    @override
    def get_resource_metadata(
        self, query: dict[str, str]
    ) -> HTTPSimpleStoreResourceInfo: ...
    # e3-core narrows the metadata with an isinstance under TYPE_CHECKING only.
    @override
    def download_resource_content(
        self, metadata: ResourceInfo, dest: str
    ) -> str | None: ...
