"""Worker tags: create, rename, delete, each announced on `/workertags`."""

from __future__ import annotations

import logging
import uuid as uuidlib

from flamenco_manager import payloads
from flamenco_manager.model import Tag
from flamenco_manager.services.errors import Conflict, NotFound
from flamenco_manager.services.events import Hub
from flamenco_manager.store import Store, StoreConflict

log = logging.getLogger(__name__)


class Tags:
    def __init__(self, store: Store, hub: Hub) -> None:
        self.store = store
        self.hub = hub

    def get(self, tag_uuid: str) -> Tag:
        tag = self.store.get_tag(tag_uuid)
        if tag is None:
            raise NotFound("worker tag not found")
        return tag

    def all(self) -> list[Tag]:
        return self.store.list_tags()

    def create(self, *, name: str, description: str) -> Tag:
        """A new tag; its name is stored as sent, an empty one too, as Flamenco does."""
        try:
            with self.store.transaction():
                tag = self.store.create_tag(uuid=str(uuidlib.uuid4()), name=name, description=description)
        except StoreConflict as exc:
            raise Conflict(f"name: a worker tag named {name!r} already exists") from exc
        log.info("worker tag created tag=%s name=%r", tag.uuid, name)
        self.hub.publish("/workertags", {"tag": payloads.tag(tag)})
        return tag

    def update(self, tag: Tag, *, name: str, description: str) -> None:
        try:
            with self.store.transaction():
                self.store.update_tag(tag.id, name=name, description=description)
        except StoreConflict as exc:
            raise Conflict(f"name: a worker tag named {name!r} already exists") from exc
        tag.name, tag.description = name, description
        self.hub.publish("/workertags", {"tag": payloads.tag(tag)})

    def delete(self, tag: Tag) -> None:
        with self.store.transaction():
            self.store.delete_tag(tag.id)
        log.info("worker tag deleted tag=%s", tag.uuid)
        self.hub.publish("/workertags", {"tag": payloads.tag(tag), "was_deleted": True})
        # Jobs that were limited to the tag's workers may now run anywhere.
        self.hub.work_available()
