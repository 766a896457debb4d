"""Building BLAST databases with the real makeblastdb, and uploading them to Azure Files.

Azurite has no Files service, so the upload is tested at the SDK boundary: the real
azure-storage-file-share client runs against a transport that records each HTTP request
and answers like the service would.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest import HttpRequest
from azure.storage.fileshare import ShareClient

from blast_core.blast.builder import DatabaseBuildError, build_database
from blast_core.storage import share
from blast_core.storage.share import upload_database

needs_blast = pytest.mark.skipif(
    shutil.which("makeblastdb") is None or shutil.which("blastdbcmd") is None,
    reason="BLAST+ (makeblastdb, blastdbcmd) is not installed")


def write_fasta(path: Path, alphabet: str, count: int, length: int) -> Path:
    rng = random.Random(5)
    with path.open("w") as fasta:
        for number in range(1, count + 1):
            sequence = "".join(rng.choice(alphabet) for _ in range(length))
            fasta.write(f">acc{number} test sequence {number}\n")
            for start in range(0, length, 60):
                fasta.write(sequence[start:start + 60] + "\n")
    return path


def blastdbcmd(*args: str) -> str:
    return subprocess.run(
        ["blastdbcmd", *args], capture_output=True, text=True, check=True).stdout


@needs_blast
def test_builds_a_nucleotide_database_blastdbcmd_reads(tmp_path: Path) -> None:
    # A space in the FASTA's path: makeblastdb would split `-in` there.
    fasta = write_fasta(tmp_path / "my genes.fa", "ACGT", count=12, length=150)
    out = tmp_path / "db"

    files = build_database(fasta, "genes", "nucl", "Test genes", out)

    assert files == sorted(files)
    assert {f.suffix for f in files} >= {".nhr", ".nin", ".nsq"}
    assert all(f.parent == out and f.name.startswith("genes.") for f in files)
    info = blastdbcmd("-db", str(out / "genes"), "-info")
    assert "Database: Test genes" in info
    assert "12 sequences; 1,800 total bases" in info
    assert "BLASTDB Version: 5" in info
    # -parse_seqids kept the accessions.
    assert blastdbcmd("-db", str(out / "genes"), "-entry", "acc7").startswith(">acc7 ")


@needs_blast
def test_builds_a_protein_database(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "proteins.fa", "ACDEFGHIKLMNPQRSTVWY", count=3, length=80)

    files = build_database(fasta, "prot.v1", "prot", "Proteins", tmp_path / "db")

    assert ".psq" in {f.suffix for f in files}
    assert "3 sequences; 240 total residues" in blastdbcmd(
        "-db", str(tmp_path / "db" / "prot.v1"), "-info")


@needs_blast
def test_makeblastdb_errors_are_reported(tmp_path: Path) -> None:
    fasta = tmp_path / "twice.fa"
    fasta.write_text(">dup one\nACGTACGT\n>dup two\nACGTACGT\n")

    with pytest.raises(DatabaseBuildError, match=r"(?i)duplicate"):
        build_database(fasta, "twice", "nucl", "Twice", tmp_path / "db")


@needs_blast
def test_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    # Everything in out_dir is returned as the database: nothing else may be there.
    fasta = write_fasta(tmp_path / "a.fa", "ACGT", count=2, length=40)

    with pytest.raises(DatabaseBuildError, match="not empty"):
        build_database(fasta, "a", "nucl", "A", tmp_path)


def test_missing_makeblastdb(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "a.fa", "ACGT", count=1, length=10)

    with pytest.raises(DatabaseBuildError, match="not found"):
        build_database(fasta, "a", "nucl", "A", tmp_path / "db", makeblastdb="no-such-makeblastdb")


@pytest.mark.parametrize(("name", "dbtype"), [
    ("my db", "nucl"), ("-out", "nucl"), ("../up", "nucl"), ("", "nucl"), ("ok", "dna"),
])
def test_rejects_bad_names_and_types(tmp_path: Path, name: str, dbtype: str) -> None:
    fasta = write_fasta(tmp_path / "a.fa", "ACGT", count=1, length=10)

    with pytest.raises(ValueError, match=r"database name|dbtype"):
        build_database(fasta, name, dbtype, "T", tmp_path / "db")


class FakeFilesService(HttpTransport):
    """Answers Azure Files REST calls as the service would and records them."""

    def __init__(self, existing_directories: tuple[str, ...] = ()) -> None:
        self.existing = set(existing_directories)
        self.calls: list[tuple[str, str, dict[str, str], bytes]] = []

    def send(self, request: HttpRequest, **kwargs: object) -> RequestsTransportResponse:
        body = request.content if isinstance(request.content, bytes) else b""
        self.calls.append((request.method, request.url, dict(request.headers), body))
        response = requests.Response()
        response.status_code, response.reason = 201, "Created"
        if "restype=directory" in request.url and share_path(request.url) in self.existing:
            response.status_code, response.reason = 409, "Conflict"
            response.headers["x-ms-error-code"] = "ResourceAlreadyExists"
        response.headers["ETag"] = '"0x8DC0000000000000"'
        response.headers["Last-Modified"] = "Wed, 25 Nov 2026 12:00:00 GMT"
        response._content = b""
        return RequestsTransportResponse(request, response)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeFilesService:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def written(self) -> dict[str, bytes]:
        """Bytes written per file path (share name first), from the Put Range calls."""
        files: dict[str, bytes] = {}
        for method, url, headers, body in self.calls:
            if method == "PUT" and "comp=range" in url and headers.get("x-ms-write") == "update":
                files[share_path(url)] = files.get(share_path(url), b"") + body
        return files

    def created_directories(self) -> list[str]:
        return [share_path(url) for _, url, _, _ in self.calls if "restype=directory" in url]


def share_path(url: str) -> str:
    """`share/dir/file` of a request URL; the SDK sends a directory's `/` as %2F."""
    return unquote(url.split(".net/", 1)[1].split("?", 1)[0])


def client_class(service: FakeFilesService) -> type[ShareClient]:
    """ShareClient sending through `service`, for code that builds its own client."""

    class Client(ShareClient):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, transport=service, **kwargs)

    return Client


CONNECTION_STRING = ("DefaultEndpointsProtocol=https;AccountName=acct;"
                     "AccountKey=" + "a2V5" * 22 + ";EndpointSuffix=core.windows.net")


@pytest.fixture
def db_files(tmp_path: Path) -> list[Path]:
    files = []
    for suffix, content in ((".nhr", b"headers"), (".nin", b"index"), (".nsq", b"\x00\x01seq")):
        path = tmp_path / f"genes{suffix}"
        path.write_bytes(content)
        files.append(path)
    return files


def test_upload_creates_directories_and_writes_every_file(db_files: list[Path]) -> None:
    service = FakeFilesService(existing_directories=("blastdb/dbs",))
    share = ShareClient.from_connection_string(CONNECTION_STRING, "blastdb", transport=service)

    uploaded = upload_database(db_files, share, directory="/dbs/genes/")

    assert uploaded == ["dbs/genes/genes.nhr", "dbs/genes/genes.nin", "dbs/genes/genes.nsq"]
    # "dbs" already existed (409 from the service) and is not an error.
    assert service.created_directories() == ["blastdb/dbs", "blastdb/dbs/genes"]
    assert service.written() == {
        "blastdb/dbs/genes/genes.nhr": b"headers",
        "blastdb/dbs/genes/genes.nin": b"index",
        "blastdb/dbs/genes/genes.nsq": b"\x00\x01seq",
    }
    assert all(headers["Authorization"].startswith("SharedKey acct:")
               for _, _, headers, _ in service.calls)


def test_upload_to_the_share_root_from_a_connection_string(
        db_files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeFilesService()
    monkeypatch.setattr(share, "ShareClient", client_class(service))

    uploaded = upload_database(db_files, CONNECTION_STRING, "blastdb")

    assert uploaded == ["genes.nhr", "genes.nin", "genes.nsq"]
    assert service.created_directories() == []
    assert set(service.written()) == {"blastdb/genes.nhr", "blastdb/genes.nin", "blastdb/genes.nsq"}


def test_a_share_name_is_needed_with_a_connection_string(db_files: list[Path]) -> None:
    with pytest.raises(ValueError, match="share_name"):
        upload_database(db_files, CONNECTION_STRING)


def test_share_client_from_a_sas_url() -> None:
    client = share.share_client(
        "https://acct.file.core.windows.net/?sv=2022-11-02&ss=f&sp=rwc&sig=abc%3D", "blastdb")

    assert client.account_name == "acct"
    assert client.share_name == "blastdb"
    assert "sig=abc" in client.url


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("entra-token", 4_102_444_800)


def test_share_client_from_a_bare_url_uses_entra_with_backup_intent(
        db_files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeFilesService()
    monkeypatch.setattr(share, "ShareClient", client_class(service))
    monkeypatch.setattr(share, "DefaultAzureCredential", FakeCredential)

    upload_database(db_files[:1], "https://acct.file.core.windows.net", "blastdb")

    assert service.calls
    for _, _, headers, _ in service.calls:
        assert headers["Authorization"] == "Bearer entra-token"
        assert headers["x-ms-file-request-intent"] == "backup"
