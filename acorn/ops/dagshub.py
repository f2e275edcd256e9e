"""The DagsHub profile: one repository on DagsHub as MLflow server, DVC storage and Label Studio.

``acorn dagshub setup --repo owner/name`` writes what the pipeline needs to use them, and
keeps every secret out of git: the MLflow tracking URI and its credentials go to the
git-ignored ``.env`` (``acorn.model.registry`` reads it), the DVC remote's address to
``.dvc/config`` (committed, so a clone knows where the data is) and its keys to the
git-ignored ``.dvc/config.local``, as ``dvc remote modify --local`` does.

It does not call ``dagshub.init``: with no valid token that opens a browser login and waits
forever, which hangs a headless job, and it creates repositories on a typo. Instead the token
must be in ``DAGSHUB_USER_TOKEN`` (checked first), and the dagshub client is used for what it
knows: the repository's URLs, the user the token belongs to, whether the repository exists.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from acorn.data.repo_uris import TOKEN_VAR, dagshub_host
from acorn.runtime.errors import AcornError

REMOTE = "dagshub"
DVC_PREFIX = "dvc"  # DVC's files go under this prefix of the repository's bucket
# a named region spares s3fs its bucket-region look-up, which an S3-compatible server need not answer
BUCKET_REGION = "us-east-1"
_REPO = re.compile(r"[\w.-]+/[\w.-]+")


class DagsHubError(AcornError):
    """DagsHub set-up cannot go on; the message names the variable, repository or host to fix."""


@dataclass(frozen=True)
class DagsHubProfile:
    """Where one DagsHub repository's services are (no secret here: safe to print)."""

    host: str
    owner: str
    repo: str
    user: str  # the token's owner, MLflow's user name
    repo_url: str
    bucket_endpoint: str  # S3-compatible endpoint of the repository's bucket
    label_studio_url: str

    @property
    def mlflow_uri(self) -> str:
        return f"{self.repo_url}.mlflow"

    @property
    def dvc_url(self) -> str:
        return f"s3://{self.repo}/{DVC_PREFIX}"


def require_token(env: Mapping[str, str] | None = None) -> str:
    """The DagsHub token from the environment, or a clear error before anything waits for a login."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_VAR, "").strip()
    if not token:
        raise DagsHubError(
            f"{TOKEN_VAR} is not set: create a token at {dagshub_host(env)}/user/settings/tokens and "
            f"export {TOKEN_VAR}=<token> (acorn never starts the browser login, which waits forever "
            "in a headless job)"
        )
    return token


def resolve_profile(repo: str, token: str, host: str | None = None) -> DagsHubProfile:
    """Ask DagsHub who the token belongs to and whether ``repo`` exists; build its URLs."""
    if not _REPO.fullmatch(repo):
        raise DagsHubError(f"--repo {repo!r}: expected <owner>/<name>, e.g. squirrel-lab/backyard")
    host = (host or dagshub_host()).rstrip("/")
    import httpx
    from dagshub.auth.token_auth import HTTPBearerAuth
    from dagshub.common.api.repo import RepoAPI, RepoNotFoundError
    from dagshub.common.api.user import UserAPI, UserNotFoundError

    # an explicit auth object: RepoAPI's default would fall back to the browser login
    api = RepoAPI(repo, host=host, auth=HTTPBearerAuth(token))
    try:
        user = UserAPI.get_user_from_token(token, host=host).username
        api.get_repo_info()
    except (UserNotFoundError, RuntimeError) as exc:  # the client's errors for any other HTTP status
        raise DagsHubError(
            f"{host} refused the request ({exc}): check that the token in {TOKEN_VAR} is valid "
            f"and can read {repo}"
        ) from None
    except RepoNotFoundError:
        raise DagsHubError(
            f"no repository {repo} on {host}: create it there first (or check --repo's spelling)"
        ) from None
    except httpx.HTTPError as exc:
        raise DagsHubError(f"cannot reach {host} ({type(exc).__name__}: {exc})") from None
    return DagsHubProfile(
        host=host,
        owner=api.owner,
        repo=api.repo_name,
        user=user,
        repo_url=api.repo_url,
        bucket_endpoint=api.repo_bucket_api_url(),
        # the client's own Label Studio URL, without its trailing "api/"
        label_studio_url=api.label_studio_api_url().removesuffix("/api"),
    )


def write_profile(
    root: Path,
    profile: DagsHubProfile,
    token: str,
    *,
    label_studio: bool = False,
    default_remote: bool = True,
) -> list[str]:
    """Write the profile into ``root``'s ``.env`` and DVC config; returns what was set (no secrets)."""
    from acorn.labeling.labelstudio.client import update_dotenv

    if not (root / ".dvc").is_dir():
        raise DagsHubError(f"{root.resolve()} is not a DVC repository: run from the repository's root")
    env_file = root / ".env"
    config_local = root / ".dvc" / "config.local"
    for secret_file in (env_file, config_local):
        _require_git_ignored(root, secret_file)
    values = {
        "MLFLOW_TRACKING_URI": profile.mlflow_uri,
        "MLFLOW_TRACKING_USERNAME": profile.user,
        "MLFLOW_TRACKING_PASSWORD": token,
    }
    if label_studio:
        values |= {"LABEL_STUDIO_URL": profile.label_studio_url, "LABEL_STUDIO_API_KEY": token}
    update_dotenv(env_file, values)
    done = [f".env: {key}" for key in values]

    from dvc.config import Config

    config = Config(dvc_dir=str(root / ".dvc"))
    with config.edit("repo") as conf:
        conf["remote"][REMOTE] = {
            "url": profile.dvc_url,
            "endpointurl": profile.bucket_endpoint,
            "region": BUCKET_REGION,
        }
        if default_remote:
            conf["core"]["remote"] = REMOTE
    with config.edit("local") as conf:
        conf["remote"][REMOTE] = {"access_key_id": token, "secret_access_key": token}
    config_local.chmod(0o600)
    done.append(f".dvc/config: remote {REMOTE} = {profile.dvc_url} at {profile.bucket_endpoint}")
    if default_remote:
        done.append(f".dvc/config: default remote {REMOTE}")
    done.append(f".dvc/config.local: remote {REMOTE} keys")
    return done


def _require_git_ignored(root: Path, path: Path) -> None:
    """Refuse to write a token into a file git would commit."""
    proc = subprocess.run(
        ["git", "check-ignore", "-q", str(path.relative_to(root))], cwd=root, capture_output=True
    )
    if proc.returncode != 0:
        raise DagsHubError(
            f"{path.relative_to(root)} is not git-ignored in {root.resolve()}: add it to .gitignore "
            "before a token is written there"
        )


def setup_dagshub(
    root: Path, repo: str, *, host: str | None = None, label_studio: bool = False, default_remote: bool = True
) -> tuple[DagsHubProfile, list[str]]:
    """``acorn dagshub setup``: token check, then DagsHub's answers, then local files."""
    token = require_token()
    profile = resolve_profile(repo, token, host)
    return profile, write_profile(
        root, profile, token, label_studio=label_studio, default_remote=default_remote
    )


dagshub_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="DagsHub as MLflow server, DVC storage and Label Studio."
)


@dagshub_app.command()
def setup(
    repo: Annotated[str, typer.Option("--repo", help="<owner>/<name> of an existing DagsHub repository")],
    label_studio: Annotated[
        bool, typer.Option("--label-studio", help="also use the repository's hosted Label Studio")
    ] = False,
    default: Annotated[bool, typer.Option(help="make the DagsHub remote DVC's default")] = True,
    host: Annotated[
        str | None, typer.Option(help="DagsHub instance (default: $DAGSHUB_CLIENT_HOST or dagshub.com)")
    ] = None,
) -> None:
    """Point MLflow, the DVC remote and (with --label-studio) Label Studio at a DagsHub repository.

    The token comes from DAGSHUB_USER_TOKEN; it is written only to git-ignored files.
    """
    profile, done = setup_dagshub(Path(), repo, host=host, label_studio=label_studio, default_remote=default)
    typer.echo(f"DagsHub repository {profile.owner}/{profile.repo} on {profile.host} (user {profile.user}):")
    for line in done:
        typer.echo(f"  {line}")
    push = "dvc push" if default else f"dvc push -r {REMOTE}"
    typer.echo(
        f"next: commit .dvc/config, then `{push}`; `dvc repro` registers models at {profile.mlflow_uri}"
    )
    if label_studio:
        typer.echo("      and set labeling.backend: label-studio in params.yaml")
