"""`sage demo`: drain the built-in example backlog in a throwaway repository, offline."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import click

from sage_stream.commands.stream import run_stream
from sage_stream.engine.settings import StreamOptions
from sage_stream.errors import SageError
from sage_stream.paths import SagePaths


def make_demo_repo(directory: Path) -> Path:
    """A new git repository holding the example project and its backlog."""
    example = resources.files("sage_stream") / "example"
    if directory.exists() and any(directory.iterdir()):
        raise SageError(f"{directory} is not empty: pass a new directory to --dir")
    directory.mkdir(parents=True, exist_ok=True)
    with resources.as_file(example) as source:
        shutil.copytree(Path(source) / "repo", directory, dirs_exist_ok=True)
        tickets = SagePaths.of_repo(directory).tickets
        tickets.mkdir(parents=True)
        for item in (Path(source) / "tickets").iterdir():
            shutil.copy2(item, tickets / item.name)
    (directory / ".gitignore").write_text(".sage/\n__pycache__/\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=sage demo", "-c", "user.email=demo@sage.invalid",
         "commit", "-q", "-m", "calc: empty project"],
    ):
        done = subprocess.run(argv, cwd=directory, capture_output=True, text=True)
        if done.returncode != 0:
            raise SageError(f"could not create the demo repository ({' '.join(argv)}): {done.stderr.strip()}")
    return directory


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to create the demo repository (default: a new temporary directory).")
@click.option("--parallel", default="3", show_default=True, metavar="N|auto",
              help="Workers. The demo agent only sleeps, so it runs 3 at once even on a small machine.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--plain", is_flag=True, help="Timestamped lines instead of the live view.")
def command(directory: Path | None, parallel: str, as_json: bool, plain: bool) -> int:
    """Create a throwaway repo with the example backlog and drain it with the exec agent."""
    repo = make_demo_repo(directory or Path(tempfile.mkdtemp(prefix="sage-demo-")))
    click.echo(f"demo repository: {repo}")
    code = run_stream(StreamOptions(
        auto=True, parallel=parallel, agent="exec", index=str(SagePaths.of_repo(repo).index),
        output="json" if as_json else "plain" if plain else "auto",
    ))
    if not as_json:
        log = subprocess.run(["git", "log", "--oneline", "--graph", "-n", "20"], cwd=repo,
                             capture_output=True, text=True).stdout
        click.echo(f"\nwhat landed on main ({repo}):\n{log}")
        sage = sage_command()
        click.echo(f"try: cd {repo} && {sage} status && {sage} tickets")
        if sage != "sage":
            click.echo(f"(`sage` alone works once the virtualenv is active: source {Path(sage).parent}/activate)")
    return code


def sage_command() -> str:
    """How to run this very sage from a fresh shell: `sage` when that is what PATH finds,
    else the full path of the script that is running (a venv's .venv/bin/sage), else
    `python -m sage_stream` with this interpreter."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    on_path = shutil.which("sage")
    if script is not None and script.name == "sage" and script.is_file():
        if on_path is not None and Path(on_path).resolve() == script:
            return "sage"
        return shlex.quote(str(script))
    if on_path is not None and Path(on_path).absolute().parent == Path(sys.executable).absolute().parent:
        return "sage"
    return f"{shlex.quote(sys.executable)} -m sage_stream"
