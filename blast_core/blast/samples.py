"""Sample queries: real sequences from a BLAST database, mutated with a fixed seed."""

from __future__ import annotations

import random

from blast_core.blast.programs import run_tool


def database_sequences(db_path: str, blastdbcmd: str = "blastdbcmd") -> list[str]:
    output = run_tool([blastdbcmd, "-db", db_path, "-entry", "all", "-outfmt", "%s"], timeout=600)
    return output.split()


def sample_fasta(sequences: list[str], count: int, seed: int = 7, mutation_rate: float = 0.03,
                 max_length: int = 1500, label: str = "sample") -> str:
    """FASTA of `count` sequences picked with `seed`, each cut to `max_length` and with about
    `mutation_rate` of its letters replaced, so that hits are close but not identical."""
    rng = random.Random(seed)
    lines = []
    for number, index in enumerate(rng.sample(range(len(sequences)), count), start=1):
        residues = list(sequences[index][:max_length])
        for position in range(len(residues)):
            if rng.random() < mutation_rate:
                residues[position] = rng.choice("ACGT")
        lines += [f">q{number} {label} {index}", "".join(residues)]
    return "\n".join(lines) + "\n"
