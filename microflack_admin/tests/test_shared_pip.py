"""The one pip the admin scripts use (lib/common.sh's shared_pip): made by
the Python that makes the platform's virtualenvs, made again when that
Python changes, and never deleting a MF_PIP_VENV it was given."""
import os
import subprocess
from pathlib import Path

ADMIN = Path(__file__).resolve().parent.parent


def shared_pip(tmp_path, *args, **env):
    script = f'source {ADMIN}/lib/common.sh && shared_pip "$@"'
    environment = {**os.environ, 'MF_HOME': str(tmp_path / 'home'),
                   'XDG_CACHE_HOME': str(tmp_path / 'cache'), **env}
    environment.pop('MF_PIP_VENV', None)
    environment.update(env)
    return subprocess.run(['bash', '-c', script, 'shared_pip', *args],
                          env=environment, capture_output=True, text=True,
                          timeout=300)


def python_identity(tmp_path):
    script = (f'source {ADMIN}/lib/common.sh && "$(python_for_venvs)" -c '
              '"import sys; print(sys.base_prefix, sys.version)"')
    return subprocess.run(['bash', '-c', script], capture_output=True,
                          text=True, check=True,
                          env={**os.environ, 'MF_HOME': str(tmp_path)}).stdout


def test_made_once_by_the_virtualenvs_python_and_again_for_another(tmp_path):
    tool = tmp_path / 'cache' / 'microflack' / 'pip-venv'
    first = shared_pip(tmp_path, '--version')
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith('pip ')
    assert (tool / '.python').read_text() == python_identity(tmp_path)
    (tool / 'kept').touch()
    assert shared_pip(tmp_path, '--version').returncode == 0
    assert (tool / 'kept').exists()          # the same Python: reused
    (tool / '.python').write_text('/opt/another-python 3.9.2\n')
    again = shared_pip(tmp_path, '--version')
    assert again.returncode == 0, again.stderr
    assert not (tool / 'kept').exists()      # another Python's: made again
    assert (tool / '.python').read_text() == python_identity(tmp_path)


def test_a_given_folder_without_pip_is_refused_not_deleted(tmp_path):
    folder = tmp_path / 'mine'
    folder.mkdir()
    (folder / 'precious').write_text('keep me')
    result = shared_pip(tmp_path, '--version', MF_PIP_VENV=str(folder))
    assert result.returncode == 1
    assert f'MF_PIP_VENV={folder} has no pip' in result.stderr
    assert (folder / 'precious').read_text() == 'keep me'
