"""``sami-kit push RUN_DIR --repo-id USER/NAME``: upload a checkpoint and its model card to the Hugging Face Hub
(click + stdlib at import time; huggingface_hub is imported by the command)."""

from __future__ import annotations

import click


@click.command("push")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--repo-id", required=True, metavar="USER/NAME", help="The Hub model repository (created if it does "
              "not exist).")
@click.option("--iteration", "-i", type=click.IntRange(min=1), default=None,
              help="Iteration whose checkpoint to upload (default: the last one trained).")
@click.option("--private", is_flag=True, help="Create the repository private (an existing one keeps its setting).")
@click.option("--revision", default=None, metavar="BRANCH", help="Branch to commit to (created from main if "
              "missing; default: main).")
@click.option("--with-report", is_flag=True, help="Also upload the run's summary.md and report.html and the "
              "iteration's metrics.json, under sami-kit/.")
@click.option("--dry-run", is_flag=True, help="List what would be uploaded, and where; upload nothing (no token "
              "needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the upload plan (and the commit URL) as JSON.")
def push(run_dir: str, repo_id: str, iteration: int | None, private: bool, revision: str | None,
         with_report: bool, dry_run: bool, as_json: bool) -> None:
    """Upload a checkpoint of RUN_DIR with its model card to the Hugging Face Hub.

    The token comes from HF_TOKEN or `hf auth login` and is never printed; HF_ENDPOINT selects another Hub.
    Exit 2 for a bad repo id, a missing token or a refused one; 4 when the Hub cannot be reached.
    """
    from sami_toolkit.cli.common import print_json, stderr_console
    from sami_toolkit.hub.push import plan_push
    from sami_toolkit.hub.push import push as upload

    plan = plan_push(run_dir, repo_id=repo_id, iteration=iteration, with_report=with_report, private=private,
                     revision=revision)
    summary = plan.as_json()
    console = stderr_console()
    if not as_json:
        verb = "would upload" if dry_run else "uploading"
        console.print(f"{verb} iteration {plan.iteration} of {plan.run_dir} to {repo_id} "
                      f"(revision {summary['revision']}{', private' if private else ''}):", highlight=False)
        for item in summary["files"]:
            console.print(f"  {item['path']}  ({item['bytes']:,} bytes)", highlight=False)
    if dry_run:
        if as_json:
            print_json({**summary, "dry_run": True})
        return
    url = upload(plan)
    if as_json:
        print_json({**summary, "dry_run": False, "url": url})
    else:
        console.print(f"uploaded {len(summary['files'])} files: {url}", highlight=False)
