"""Sample queries: real sequences from a BLAST database, mutated with a fixed seed."""

from __future__ import annotations

import random
from collections.abc import Iterator

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


def sample_reads(background: list[str], spiked: list[str], count: int, length: int = 150,
                 seed: int = 15, every: int = 50) -> Iterator[str]:
    """FASTA records (`>read_N`) of `count` reads of `length` letters: pieces of `background`'s
    sequences, and of `spiked`'s for one read in `every` (so that a search of that database
    finds some), three letters of each replaced; fixed seed."""
    rng = random.Random(seed)
    pools = [[s for s in sequences if len(s) >= length] for sequences in (background, spiked)]
    for number in range(1, count + 1):
        source = rng.choice(pools[number % every == 0])
        start = rng.randrange(len(source) - length + 1)
        read = list(source[start:start + length])
        for _ in range(3):
            read[rng.randrange(length)] = rng.choice("ACGT")
        yield f">read_{number}\n{''.join(read)}\n"
