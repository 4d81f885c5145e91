"""Command line: each command is a small typed function over library code (attntrain.runs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from attntrain.cli_data import data_app
from attntrain.errors import UserError

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and evaluate self-attention models from YAML configs.")
app.add_typer(data_app, name="data")
config_app = typer.Typer(no_args_is_help=True, help="Show resolved configs.")
app.add_typer(config_app, name="config")

SetOption = typer.Option(None, "--set", "-s", help="Override a config key: --set model.encoder.num_layers=2")


@app.command()
def fit(
    config: Optional[Path] = typer.Argument(None, help="YAML config, e.g. configs/pos_ewt.yaml"),
    set_: Optional[List[str]] = SetOption,
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this directory from its last checkpoint"),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory of the same name"),
    seeds: Optional[int] = typer.Option(None, min=1, help="Train with N seeds (seed, seed+1, ...); report mean and std"),
    nproc: Optional[int] = typer.Option(None, min=1, help="Data-parallel over N processes on this machine (torchrun)"),
    folds: Optional[int] = typer.Option(None, min=2, help="K-fold cross-validation over data without splits; mean and std"),
    allow_data_change: bool = typer.Option(False, help="--resume even though the data differs from what the run started with"),
):
    """Train a model; prints test metrics of the best dev checkpoint at the end."""
    from attntrain.checks import check_run_dir, load_checked

    overrides = (set_ or []) + ([f"train.seeds={seeds}"] if seeds else []) + ([f"data.split.folds={folds}"] if folds else [])
    if config is not None and resume is None:
        from attntrain.train.warm_start import check as check_init

        # a config error (or a missing model.init run) is reported before torch loads, which takes seconds
        check_init(load_checked(config, overrides))
    if resume is not None:
        check_run_dir(resume)

    from attntrain.runs import fit as run_fit, format_table, launch_fit
    from attntrain.train.distributed import is_main

    if nproc and nproc > 1:
        raise typer.Exit(launch_fit(nproc, config, overrides=overrides, resume=resume, overwrite=overwrite,
                                    allow_data_change=allow_data_change))
    result = run_fit(config, overrides=overrides, resume=resume, overwrite=overwrite,
                     allow_data_change=allow_data_change)
    if result.metrics and is_main():  # under torchrun one table, from rank 0
        step = next(iter(result.metrics.values())).get("step")
        typer.echo(f"\nrun: {result.run_dir}" + (f"  (best dev step {step})" if step is not None else ""))
        typer.echo(format_table(result.metrics))
    elif result.stopped not in ("finished", "early_stop"):
        raise typer.Exit(130)


@app.command()
def pretrain(
    config: Optional[Path] = typer.Argument(None, help="YAML config of the unlabelled data, e.g. configs/pretrain_imdb.yaml"),
    set_: Optional[List[str]] = SetOption,
    resume: Optional[Path] = typer.Option(None, help="Continue the pretraining run in this directory"),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory of the same name"),
    nproc: Optional[int] = typer.Option(None, min=1, help="Data-parallel over N processes on this machine (torchrun)"),
):
    """Self-supervised training of embed + encoder on inputs alone (masked words, frames or patches); then
    fine-tune with `fit` and model.init: RUN_DIR. Sets model.head.kind=pretrain (and train.metric=loss,
    train.metric_mode=min, train.eval_splits=[dev] unless the config names them)."""
    from attntrain.checks import check_run_dir, load_checked
    from attntrain.train.pretrain import pretrain_overrides

    overrides = set_ or []
    if resume is not None:
        check_run_dir(resume)
    elif config is not None:
        overrides = pretrain_overrides(config, overrides)
        load_checked(config, overrides)  # a config error is reported before torch loads
    from attntrain.runs import fit as run_fit, format_table, launch_fit
    from attntrain.train.distributed import is_main

    if nproc and nproc > 1:
        raise typer.Exit(launch_fit(nproc, config, overrides=overrides, resume=resume, overwrite=overwrite))
    result = run_fit(config, overrides=overrides, resume=resume, overwrite=overwrite)
    if result.metrics and is_main():
        typer.echo(f"\nrun: {result.run_dir}; fine-tune from it with model.init: {result.run_dir}")
        typer.echo(format_table(result.metrics))
    elif result.stopped not in ("finished", "early_stop"):
        raise typer.Exit(130)


@app.command("eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="Run directory, e.g. runs/pos_ewt"),
    split: str = typer.Option("test", help="Split to evaluate"),
    checkpoint: str = typer.Option("best", help="best, last, or a .safetensors path"),
    beam: Optional[int] = typer.Option(None, min=1, help="seq2seq: beam width (1 = greedy); default from the config"),
    save_predictions: bool = typer.Option(False, help="Also write predictions_<split>.jsonl (one record per example, in order)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s",
                                             help="Evaluate with a changed decoding, e.g. model.head.decode=argmax"),
):
    """Evaluate a run's checkpoint on a split; writes eval_<split>.json into the run directory."""
    from attntrain.checks import check_run_dir

    check_run_dir(run_dir)  # before torch loads
    from attntrain.runs import eval_run, format_table

    metrics = eval_run(run_dir, split, checkpoint=checkpoint, beam=beam, save_predictions=save_predictions,
                       overrides=set_ or [])
    typer.echo(format_table({split: metrics}))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="Run directory"),
    text: Optional[List[str]] = typer.Argument(None, help="Inputs; none (or '-') reads lines from stdin"),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Read inputs from this file, one per line"),
    format_: str = typer.Option("text", "--format", help="text | jsonl (a JSON record per line) | tsv (header + columns)"),
    top_k: Optional[int] = typer.Option(None, min=1, help="jsonl/tsv of a classifier: add the K most probable labels"),
    beam: Optional[int] = typer.Option(None, min=1, help="seq2seq: beam width (1 = greedy); default from the config"),
    pretokenized: bool = typer.Option(False, help="Text is already split into tokens by spaces (skip the run's tokenizer)"),
    checkpoint: str = typer.Option("best", help="best, last, or a .safetensors path"),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s",
                                             help="Predict with a changed decoding, e.g. model.head.decode=argmax"),
):
    """Predict on raw inputs (a sentence per argument or line) and print the outputs."""
    from attntrain.checks import check_run_dir

    check_run_dir(run_dir)  # before torch loads
    from attntrain.io import read_text, stdin_lines
    from attntrain.runs import predict as run_predict

    if file is not None:
        if not file.is_file():
            raise UserError(f"--file: {file} not found")
        lines = read_text(file).splitlines()
    elif text and text != ["-"]:
        lines = text
    else:
        lines = stdin_lines()
    interactive = file is None and not (text and text != ["-"]) and sys.stdin.isatty()  # answer each line as it is typed
    for out in run_predict(run_dir, lines, batch_size=1 if interactive else None, fmt=format_, top_k=top_k, beam=beam,
                           pretokenized=pretokenized, checkpoint=checkpoint, overrides=set_ or []):
        typer.echo(out)


@app.command()
def compare(
    targets: List[str] = typer.Argument(..., help="Run directories, or one CONFIG with --vary"),
    vary: Optional[List[str]] = typer.Option(None, help="Sweep: KEY=v1,v2 (repeat for a grid); needs a CONFIG"),
    set_: Optional[List[str]] = SetOption,
    out: Path = typer.Option(Path("runs/compare"), help="Writes OUT.md and OUT.csv"),
):
    """Side-by-side table of runs (task, encoder, parameters, test metrics, time, tokens/s, memory)."""
    from attntrain.checks import check_run_dir

    for target in [] if vary else targets:
        check_run_dir(target, seeds=True)  # before torch loads
    from attntrain.compare import compare_table, summarize_run
    from attntrain.sweep import run_sweep
    from attntrain.io import atomic_write_text

    if vary:
        if len(targets) != 1 or not targets[0].endswith((".yaml", ".yml")):
            raise UserError("--vary needs exactly one CONFIG file, e.g. attntrain compare configs/pos_ewt.yaml "
                            "--vary model.encoder.kind=transformer,cnn,rnn")
        targets = [str(p) for p in run_sweep(targets[0], vary, set_ or [])]
    markdown, csv = compare_table([summarize_run(t) for t in targets])
    atomic_write_text(out.with_suffix(".md"), markdown + "\n")
    atomic_write_text(out.with_suffix(".csv"), csv)
    typer.echo(markdown)
    typer.echo(f"\nwrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")


@app.command()
def curves(
    configs: List[str] = typer.Argument(..., help="YAML configs (one line each); fractions may follow them"),
    train_fractions: List[str] = typer.Option(..., help="Fractions of train: 0.01 0.03 0.1 0.3 1 (or 0.01,0.1)"),
    seeds: int = typer.Option(1, min=1, help="Seeds per point (each its own nested subset); error bars = std"),
    name: str = typer.Option("curves", help="Runs go to runs/NAME/<config name>/frac-<f>/"),
    set_: Optional[List[str]] = SetOption,
    min_steps: Optional[int] = typer.Option(None, min=1, help="Updates per run at least (default: 1/4 of the full-data run's)"),
):
    """Data efficiency: train each config on nested subsets of train; test metric against examples (json, csv, png)."""
    from attntrain.curves import parse_fractions, run_curves

    # click options take one value: numbers after --train-fractions arrive as arguments
    numbers = [c for c in configs if not c.endswith((".yaml", ".yml")) and c.replace(".", "", 1).isdigit()]
    fractions = parse_fractions(train_fractions + numbers)
    paths = run_curves([c for c in configs if c not in numbers], fractions, name=name, seeds=seeds,
                       overrides=set_ or [], min_steps=min_steps)
    typer.echo("wrote " + ", ".join(map(str, paths)))


@app.command()
def attention(
    run_dir: Path = typer.Argument(..., help="Run directory of a transformer run"),
    text: str = typer.Argument(..., help="Input to draw the attention weights for"),
    layer: int = typer.Option(0, help="Layer (0 = first)"),
    head: Optional[int] = typer.Option(None, help="One head; default: all heads of the layer"),
    out: Optional[Path] = typer.Option(None, help="PNG path (default: RUN_DIR/attention_layer<L>[_head<H>].png)"),
    checkpoint: str = typer.Option("best", help="best, last, or a .safetensors path"),
):
    """Draw the attention matrix (alpha) of a layer as a labeled heatmap PNG."""
    from attntrain.checks import check_run_dir

    check_run_dir(run_dir)  # before torch loads
    from attntrain.plots import attention_map

    typer.echo(attention_map(run_dir, text, layer=layer, head=head, out=out, checkpoint=checkpoint))


@app.command()
def validate(config: Path = typer.Argument(..., help="YAML config"), set_: Optional[List[str]] = SetOption,
             folds: Optional[int] = typer.Option(None, min=2, help="Check it as `fit --folds K` would run it"),
             data: bool = typer.Option(False, "--data", help="Also read and check the data, build the model and print "
                                       "the split sizes, parameters and budget (what fit would do; nothing is written)")):
    """Check a config (keys, types, ranges, choices, dataset, label, metric) without training."""
    from attntrain.checks import load_checked

    cfg = load_checked(config, (set_ or []) + ([f"data.split.folds={folds}"] if folds else []))
    if data:
        from attntrain.runs import preview

        typer.echo(preview(cfg))
    typer.echo(f"{config}: ok (run directory {cfg.run_dir()})")


@app.command()
def init(
    data: Path = typer.Argument(..., help="Your data: a CSV/TSV/JSONL/Parquet/CoNLL(-U)/BIO file, a .txt of "
                                "'<label> <text>' lines, or a folder (wavs, images, pos.txt/neg.txt, name.pos/name.neg, "
                                "parallel text, node + edge tables, a saved Hugging Face dataset)"),
    target: Optional[str] = typer.Option(None, "--target", help="The field to predict (a label, a tag list or a target "
                                         "text); default: a folder's label, or the one field named label, tags, upos, ..."),
    input_field: Optional[str] = typer.Option(None, "--input", help="The input field (default: guessed)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the config (default: print it)"),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="A word-vector file (word2vec, GloVe, fastText; "
                                           "gzipped or not) to start a text model's word table from"),
):
    """Inspect DATA and write a commented config sized to it (batch, budget, evaluation, model)."""
    from attntrain.init import starter_config
    from attntrain.io import atomic_write_text

    text = starter_config(data, target, input_field, out, vectors)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}; train with: attntrain fit {out}", err=True)


@app.command()
def tune(
    config: Path = typer.Argument(..., help="YAML config with a tune: section (the search space per dotted key)"),
    trials: int = typer.Option(..., min=0, help="Trials to add to the study (a second call adds more; 0: report only)"),
    jobs: int = typer.Option(1, min=1, help="Processes training trials at once; they share the study"),
    timeout: Optional[float] = typer.Option(None, min=1, help="Start no new trial after this many seconds"),
    storage: Optional[str] = typer.Option(None, help="Optuna database URL; default sqlite under runs/<name>/tune/"
                                          "study.db; a postgresql://... URL shares one study between machines"),
    folds: Optional[int] = typer.Option(None, min=2, help="Objective: mean dev metric over K folds"),
    set_: Optional[List[str]] = SetOption,
    worker: int = typer.Option(0, min=0, hidden=True, help="Run trials only: process N of those --jobs started"),
):
    """Search the config's tune.space with Optuna on the dev metric; test only for the best trial."""
    from attntrain.checks import load_checked

    load_checked(config, set_ or [])  # a config error is reported before torch loads
    from attntrain.tune import tune as run_tune

    text = run_tune(config, trials=trials, jobs=jobs, timeout=timeout, storage=storage, folds=folds,
                    overrides=set_ or [], worker=worker)
    if text:
        typer.echo(text)


# ---- using a trained run: serve, export, config show, runs ----------------------------------------

@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="Run directory"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 exposes the server to the network)"),
    port: int = typer.Option(8000, min=0, max=65535),
    max_batch: int = typer.Option(32, min=1, help="Inputs per model call; 1 turns dynamic batching off"),
    max_wait_ms: float = typer.Option(5.0, min=0.0, help="How long a queued input waits for others to join its batch"),
    max_tokens: int = typer.Option(4096, min=1, help="Padded positions per model call (batches group similar lengths)"),
    max_body_bytes: int = typer.Option(1 << 20, min=1, help="Larger request bodies are refused (413)"),
    max_inputs: int = typer.Option(256, min=1, help="Inputs per request"),
    max_input_chars: int = typer.Option(20000, min=1, help="Characters of one text input"),
    allow_paths: Optional[Path] = typer.Option(None, help="Let requests name audio/image files below this folder"),
    checkpoint: str = typer.Option("best", help="best, last, or a .safetensors path"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ...; default from the run's config"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads"),
):
    """Answer predictions over HTTP: POST /predict, GET /health, GET /info (JSON)."""
    from attntrain.checks import check_run_dir

    check_run_dir(run_dir)  # before torch loads
    from attntrain.serve import ServeSettings, serve as run_serve

    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_tokens=max_tokens,
                             max_body_bytes=max_body_bytes,
                             max_inputs=max_inputs, max_input_chars=max_input_chars, allow_paths=allow_paths)
    run_serve(run_dir, host=host, port=port, settings=settings, checkpoint=checkpoint, device=device, threads=threads)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="Run directory (tagging or sequence head)"),
    format_: str = typer.Option("onnx", "--format", help="onnx | torchscript"),
    out: Optional[Path] = typer.Option(None, help="Output file (default: RUN_DIR/model.onnx or model.pt)"),
    checkpoint: str = typer.Option("best", help="best, last, or a .safetensors path"),
):
    """Export the model (encoder + head) with dynamic batch and length axes; prints the file written."""
    from attntrain.checks import check_run_dir

    check_run_dir(run_dir)  # before torch loads
    from attntrain.export import export_run

    typer.echo(export_run(run_dir, fmt=format_, out=out, checkpoint=checkpoint))


@config_app.command("show")
def config_show(config: Path = typer.Argument(..., help="YAML config, or a run directory"),
                set_: Optional[List[str]] = SetOption):
    """Print the fully resolved config: every key with its value (defaults included) and its comment."""
    from attntrain.config_doc import show_config

    typer.echo(show_config(config, set_ or []))


@app.command("runs")
def runs_(folder: Path = typer.Argument(Path("runs"), help="Folder holding run directories")):
    """List runs: task, status (finished / stopped at step N), best dev metric, test metric."""
    from attntrain.runlist import list_runs, runs_table

    typer.echo(runs_table(list_runs(folder)))


def main() -> None:
    try:
        code = app(standalone_mode=False)  # returns the exit code of a typer.Exit, else the command's value
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as e:  # disk full, read-only folder, permissions: the environment, not a bug
        from attntrain.io import os_error_message

        typer.echo(f"error: {os_error_message(e)}", err=True)
        sys.exit(2)
    except Exception as e:  # usage errors (unknown option, missing argument) arrive here in non-standalone mode
        if isinstance(e, usage_errors()):
            e.show()
            sys.exit(e.exit_code)
        raise


def usage_errors() -> tuple[type, ...]:
    """The ClickException classes typer raises: typer >= 0.16 carries its own click as typer._click."""
    classes = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            classes.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except ImportError:
            pass
    return tuple(classes)


if __name__ == "__main__":
    main()
