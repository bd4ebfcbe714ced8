"""store/keys.write_documents: the one metadata-last publish order (writes, mode="a" additions, rechunks)."""

from __future__ import annotations

import zarr.storage

from parallelzarr.store import keys


class _Recording(zarr.storage.MemoryStore):
    """A memory store that records the order of its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    async def set(self, key, value, byte_range=None):  # type: ignore[override]
        self.order.append(key)
        await super().set(key, value)


def test_deepest_nodes_first_attributes_before_the_document_that_shows_the_node():
    store = _Recording()
    docs = {k: b"{}" for k in ("zarr.json", ".zgroup", ".zattrs", ".zmetadata", "t/.zarray", "t/.zattrs",
                                "g/zarr.json", "g/x/zarr.json")}
    keys.write_documents(store, docs)
    assert store.order == ["g/x/zarr.json", "t/.zattrs", "t/.zarray", "g/zarr.json", ".zattrs", ".zgroup",
                           ".zmetadata", "zarr.json"]
    assert all(keys.get(store, k) == b"{}" for k in docs)


def test_root_documents_keep_the_published_order_of_root_docs():
    # ROOT_DOCS is the order a new store's root documents were always published in.
    assert sorted(keys.ROOT_DOCS, key=keys.publish_order) == list(keys.ROOT_DOCS)
