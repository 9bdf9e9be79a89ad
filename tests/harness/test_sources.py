"""harness.sources: archives (wheel and sdist), directories and git read the same bytes."""

from __future__ import annotations

import io
import subprocess
import tarfile

from harness.cache import git_blob_id
from harness.sources import ArchiveSource, DirSource, GitSource, package_version

TC = "megatron/core/transformer/transformer_config.py"


def test_blob_id_is_gits(tmp_path):
    data = b"print('hi')\n"
    path = tmp_path / "f.py"
    path.write_bytes(data)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert git_blob_id(data) == expected.stdout.strip()


def test_sdist_top_folder_is_stripped(tmp_path):
    archive = tmp_path / "megatron_core-9.9.9.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in {"megatron_core-9.9.9/megatron/core/package_info.py": b"MAJOR = 9\nMINOR = 9\nPATCH = 9\n",
                           "megatron_core-9.9.9/setup.py": b""}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with ArchiveSource(archive) as src:
        assert src.list_files("megatron") == ["megatron/core/package_info.py"]
        assert package_version(src) == "9.9.9"
        assert src.exists("megatron/core") and not src.exists("megatron/core/nothing.py")
        assert src.read("megatron/core/nothing.py") is None and src.blob_id("nothing") is None


def test_wheel_git_and_directory_agree(archive_cache, release_repo, tmp_path):
    import git

    wheel = next((archive_cache / "pypi" / "0.13.0").iterdir())
    with ArchiveSource(wheel) as arch:
        tree = tmp_path / "tree"
        arch.extract_to(tree)
        directory = DirSource(tree)
        repo = git.Repo(release_repo)
        gsrc = GitSource(repo, repo.commit("core_v0.13.0").hexsha)
        assert arch.blob_id(TC) == directory.blob_id(TC) == gsrc.blob_id(TC)
        assert arch.read(TC) == gsrc.read(TC)
        py = [p for p in arch.list_files("megatron/core") if not p.endswith(".so")]
        assert [p for p in gsrc.list_files("megatron/core")] == py
        assert gsrc.tree_id("megatron/core") is not None and arch.tree_id("megatron/core") is None
        assert package_version(gsrc) == package_version(directory) == "0.13.0"
