"""The database catalog: parsing blastdbcmd's listing, and the real rRNA databases."""

from conftest import RRNA_DATA, SMALL_DB

from blast_core.blast.databases import DatabaseCatalog, parse_listing
from blast_core.domain.database import DatabaseInfo


def test_listing_is_parsed_relative_to_the_directory_and_sorted():
    output = ("/db/b\tNucleotide\t10\t1000\tB title\n"
              "/db/a\tProtein\t3\t300\tA\twith tab\n"
              "/elsewhere/c\tNucleotide\t1\t1\tC\n"
              "/db/sub/d\tNucleotide\t1\t1\tD\n"
              "garbage line\n")
    assert parse_listing(output, "/db/") == [
        DatabaseInfo("a", "A\twith tab", "protein", 3, 300),
        DatabaseInfo("b", "B title", "nucleotide", 10, 1000),
    ]


def test_the_real_databases_are_listed_with_their_sizes(blast_available):
    catalog = DatabaseCatalog(str(RRNA_DATA), "blastdbcmd")
    found = catalog.find(SMALL_DB)
    assert found == DatabaseInfo(SMALL_DB, "rRNA_blastdb/rRNA_blast", "nucleotide", 5681, 8252826)
    assert catalog.find("SSURef_93.fasta").sequences == 204065
    assert catalog.find("nope") is None
    assert catalog.path(SMALL_DB) == f"{RRNA_DATA}/{SMALL_DB}"


def test_a_missing_directory_has_no_databases(tmp_path):
    assert DatabaseCatalog(str(tmp_path / "absent"), "blastdbcmd").list() == []
