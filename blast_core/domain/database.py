"""A searchable BLAST database, as the catalog lists it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    title: str
    molecule: str
    sequences: int
    letters: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "molecule": self.molecule,
                "sequences": self.sequences, "letters": self.letters}
